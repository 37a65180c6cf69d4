package main

import (
	"context"
	"time"
)

// Repeat mode: the plan's calls run again and again, every interval for a bounded duration,
// as a recovery test watches Grafana's view of a plugin while its backends are disturbed.

const (
	maxRepeatDuration  = 2 * time.Hour
	minRepeatInterval  = 10 * time.Millisecond
	defaultCallTimeout = 5 * time.Second
)

// RepeatReport sums up a repeat run, per call of the plan.
type RepeatReport struct {
	Rounds     int         `json:"rounds"`
	DurationMs int64       `json:"durationMs"`
	IntervalMs int64       `json:"intervalMs"`
	Calls      []CallStats `json:"calls"`
	// FailedRounds counts rounds in which any call failed; LongestFailedRounds is the
	// longest run of such rounds in a row.
	FailedRounds        int `json:"failedRounds"`
	LongestFailedRounds int `json:"longestFailedRounds"`
}

// CallStats counts one call of the plan over all rounds. A call fails when its RPC fails
// (an error code, or a reply the SDK could not decode).
type CallStats struct {
	Index  int    `json:"index"`
	Call   string `json:"call"`
	OK     int    `json:"ok"`
	Failed int    `json:"failed"`
	// LongestFailureStreak is the most consecutive failures; LongestFailureStreakMs the
	// time from the first of them to the next success (or to the end of the run).
	LongestFailureStreak   int            `json:"longestFailureStreak"`
	LongestFailureStreakMs int64          `json:"longestFailureStreakMs"`
	FirstFailureMs         *int64         `json:"firstFailureMs,omitempty"`
	LastFailureMs          *int64         `json:"lastFailureMs,omitempty"`
	Errors                 map[string]int `json:"errors,omitempty"`
	Peers                  map[string]int `json:"peers,omitempty"`
	AnsweredBy             map[string]int `json:"answeredBy,omitempty"`

	streak      int
	streakStart time.Duration
}

func (cs *CallStats) record(r Result, at, end time.Duration) {
	if r.Peer != "" {
		cs.Peers[r.Peer]++
	}
	if r.AnsweredBy != "" {
		cs.AnsweredBy[r.AnsweredBy]++
	}
	if r.Error == nil {
		cs.OK++
		if cs.streak > 0 {
			cs.closeStreak(at)
		}
		return
	}
	cs.Failed++
	cs.Errors[r.Error.Code]++
	ms := at.Milliseconds()
	if cs.FirstFailureMs == nil {
		cs.FirstFailureMs = &ms
	}
	last := end.Milliseconds()
	cs.LastFailureMs = &last
	if cs.streak == 0 {
		cs.streakStart = at
	}
	cs.streak++
	if cs.streak > cs.LongestFailureStreak {
		cs.LongestFailureStreak = cs.streak
	}
}

// closeStreak ends a run of failures at "at" (the next success, or the end of the run).
func (cs *CallStats) closeStreak(at time.Duration) {
	if d := (at - cs.streakStart).Milliseconds(); d > cs.LongestFailureStreakMs {
		cs.LongestFailureStreakMs = d
	}
	cs.streak = 0
}

// repeat runs the plan's calls every interval until duration has passed; it returns the
// report and the last round's results.
func (s *session) repeat(ctx context.Context, duration, interval, callTimeout time.Duration) (*RepeatReport, []Result) {
	report := &RepeatReport{IntervalMs: interval.Milliseconds(), Calls: make([]CallStats, len(s.plan.Calls))}
	for i, c := range s.plan.Calls {
		report.Calls[i] = CallStats{Index: i, Call: c.Call, Errors: map[string]int{},
			Peers: map[string]int{}, AnsweredBy: map[string]int{}}
	}
	var last []Result
	failedRun := 0
	start := time.Now()
	roundStart := start
	for round := 0; ; round++ {
		if round > 0 {
			// The next round starts an interval after this one did, or at once when the
			// round took longer (missed rounds are not made up).
			if wait := time.Until(roundStart.Add(interval)); wait > 0 {
				time.Sleep(wait)
			}
			roundStart = time.Now()
		}
		if time.Since(start) >= duration {
			break
		}
		last = make([]Result, 0, len(s.plan.Calls))
		roundFailed := false
		for i, c := range s.plan.Calls {
			if c.TimeoutMs == 0 {
				c.TimeoutMs = int(callTimeout.Milliseconds())
			}
			at := time.Since(start)
			r := s.run(ctx, c)
			report.Calls[i].record(r, at, time.Since(start))
			roundFailed = roundFailed || r.Error != nil
			last = append(last, r)
		}
		report.Rounds++
		if roundFailed {
			report.FailedRounds++
			failedRun++
			report.LongestFailedRounds = max(report.LongestFailedRounds, failedRun)
		} else {
			failedRun = 0
		}
	}
	elapsed := time.Since(start)
	report.DurationMs = elapsed.Milliseconds()
	for i := range report.Calls {
		if report.Calls[i].streak > 0 {
			report.Calls[i].closeStreak(elapsed)
		}
	}
	return report, last
}
