package main

import (
	"testing"
	"time"
)

func TestCallStatsCountStreaks(t *testing.T) {
	cs := CallStats{Errors: map[string]int{}, Peers: map[string]int{}, AnsweredBy: map[string]int{}}
	ok := Result{Call: "health", Peer: "10.0.0.1:10000", AnsweredBy: "pod-a"}
	bad := Result{Call: "health", Error: &RPCError{Code: "Unavailable"}}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// ok, fail, fail, fail, ok, fail, ok  (one round every 100 ms, a call takes 10 ms)
	for i, r := range []Result{ok, bad, bad, bad, ok, bad, ok} {
		cs.record(r, ms(i*100), ms(i*100+10))
	}
	if cs.OK != 3 || cs.Failed != 4 {
		t.Fatalf("ok=%d failed=%d", cs.OK, cs.Failed)
	}
	if cs.LongestFailureStreak != 3 || cs.LongestFailureStreakMs != 300 {
		t.Fatalf("longest streak %d over %d ms, want 3 over 300 ms", cs.LongestFailureStreak, cs.LongestFailureStreakMs)
	}
	if *cs.FirstFailureMs != 100 || *cs.LastFailureMs != 510 {
		t.Fatalf("first/last failure %d/%d", *cs.FirstFailureMs, *cs.LastFailureMs)
	}
	if cs.Errors["Unavailable"] != 4 || cs.Peers["10.0.0.1:10000"] != 3 || cs.AnsweredBy["pod-a"] != 3 {
		t.Fatalf("errors %v peers %v answeredBy %v", cs.Errors, cs.Peers, cs.AnsweredBy)
	}
	// A streak still running at the end is closed at the end of the run.
	cs.record(bad, ms(700), ms(710))
	cs.record(bad, ms(800), ms(810))
	cs.record(bad, ms(900), ms(910))
	cs.record(bad, ms(1000), ms(1010))
	cs.closeStreak(ms(1500))
	if cs.LongestFailureStreak != 4 || cs.LongestFailureStreakMs != 800 {
		t.Fatalf("longest streak %d over %d ms, want 4 over 800 ms", cs.LongestFailureStreak, cs.LongestFailureStreakMs)
	}
}

func TestAnsweredByReadsReplies(t *testing.T) {
	health := Result{Call: "health", Details: []byte(`{"pid": 42, "pod": "a"}`)}
	if got := answeredBy(health, "pid"); got != "42" {
		t.Errorf("pid = %q", got)
	}
	if got := answeredBy(health, "pod"); got != "a" {
		t.Errorf("pod = %q", got)
	}
	resource := Result{Call: "resource", Body: `{"hostname":"backend-0"}`}
	if got := answeredBy(resource, "hostname"); got != "backend-0" {
		t.Errorf("hostname = %q", got)
	}
	if got := answeredBy(Result{Call: "resource", Body: "not json"}, "x"); got != "" {
		t.Errorf("not json = %q", got)
	}
}
