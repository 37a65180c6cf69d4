package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Query types (DataQuery.queryType, or "queryType" in the query JSON).
const (
	QueryRandomWalk = "randomWalk"
	QueryTable      = "table"
	QueryFail       = "fail"
	QuerySlow       = "slow"
)

// maxPoints bounds a random walk however large the time range and maxDataPoints are.
const maxPoints = 10_000

// QueryModel is the plugin-specific part of a query's JSON.
type QueryModel struct {
	QueryType   string            `json:"queryType"`
	SeriesCount int               `json:"seriesCount"`
	Labels      map[string]string `json:"labels"`
	Seed        uint64            `json:"seed"`
	SleepMs     int               `json:"sleepMs"`
}

// queriesServed counts queries across all instances, for the crash switch.
var queriesServed atomic.Int64

// QueryData answers each query on its own; one failing query does not fail the others.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, q := range req.Queries {
		d.crashIfDue()
		resp.Responses[q.RefID] = d.query(ctx, q)
	}
	return resp, nil
}

// crashIfDue ends the process, as a crashing plugin would, once the switch's quota of
// queries has been answered, so restart handling can be tested.
func (d *Datasource) crashIfDue() {
	n := queriesServed.Add(1)
	if limit := d.settings.CrashAfterQueries; limit > 0 && n > int64(limit) {
		log.DefaultLogger.Error("crash switch: exiting with status 2", "queriesServed", n-1, "limit", limit)
		os.Exit(2)
	}
}

func (d *Datasource) query(ctx context.Context, q backend.DataQuery) backend.DataResponse {
	var model QueryModel
	if err := json.Unmarshal(q.JSON, &model); err != nil {
		return d.count("invalid", backend.ErrDataResponse(backend.StatusBadRequest,
			fmt.Sprintf("query %s: the query JSON is not valid: %v", q.RefID, err)))
	}
	if q.QueryType != "" {
		model.QueryType = q.QueryType
	}
	switch model.QueryType {
	case "", QueryRandomWalk:
		return d.count(QueryRandomWalk, randomWalk(q, model))
	case QueryTable:
		return d.count(QueryTable, backend.DataResponse{Frames: data.Frames{table(q.RefID)}})
	case QueryFail:
		return d.count(QueryFail, backend.ErrDataResponseWithSource(backend.StatusBadGateway,
			backend.ErrorSourceDownstream, "the downstream service refused the query (on purpose: queryType fail)"))
	case QuerySlow:
		return d.count(QuerySlow, slow(ctx, q.RefID, model.SleepMs))
	default:
		return d.count("invalid", backend.ErrDataResponse(backend.StatusBadRequest, fmt.Sprintf(
			"query %s: unknown queryType %q; use %s, %s, %s or %s",
			q.RefID, model.QueryType, QueryRandomWalk, QueryTable, QueryFail, QuerySlow)))
	}
}

func (d *Datasource) count(queryType string, r backend.DataResponse) backend.DataResponse {
	outcome := "ok"
	if r.Error != nil {
		outcome = "error"
	}
	queriesTotal.WithLabelValues(queryType, outcome).Inc()
	return r
}

// randomWalk returns one frame per series: a time field and a labelled value field.
func randomWalk(q backend.DataQuery, m QueryModel) backend.DataResponse {
	series := max(m.SeriesCount, 1)
	points := int(min(max(q.MaxDataPoints, 1), maxPoints))
	from, to := q.TimeRange.From, q.TimeRange.To
	step := q.Interval
	if span := to.Sub(from); step <= 0 || span/step > time.Duration(points) {
		step = max(span/time.Duration(points), time.Millisecond)
	}
	seed := m.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, 0))

	var frames data.Frames
	for s := range series {
		labels := data.Labels{"series": fmt.Sprint(s)}
		for k, v := range m.Labels {
			labels[k] = v
		}
		times := make([]time.Time, 0, points)
		values := make([]float64, 0, points)
		value := rng.Float64() * 100
		for t := from; !t.After(to) && len(times) < points; t = t.Add(step) {
			times = append(times, t.UTC())
			values = append(values, value)
			value += rng.Float64() - 0.5
		}
		frame := data.NewFrame("random_walk",
			data.NewField("time", nil, times),
			data.NewField("value", labels, values),
		)
		frame.RefID = q.RefID
		frame.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesMulti, TypeVersion: data.FrameTypeVersion{0, 1}}
		frames = append(frames, frame)
	}
	return backend.DataResponse{Frames: frames}
}

// table exercises the field types a decoder must get right, including a null.
func table(refID string) *data.Frame {
	seen := time.Date(2024, 1, 2, 3, 4, 5, 600_000_123, time.UTC) // sub-ms: exercises JSON "nanos"
	ratio := 0.25
	frame := data.NewFrame("table",
		data.NewField("name", nil, []string{"alpha", "beta", "gamma"}),
		data.NewField("count", nil, []int64{1, 2, 3}),
		data.NewField("ratio", nil, []*float64{&ratio, nil, &ratio}),
		data.NewField("up", nil, []bool{true, false, true}),
		data.NewField("seen", nil, []time.Time{seen, seen.Add(time.Minute), seen.Add(time.Hour)}),
	)
	frame.RefID = refID
	frame.Fields[2].Config = &data.FieldConfig{Unit: "percentunit"}
	return frame
}

// slow waits sleepMs (default 5 s) unless the caller gives up first.
func slow(ctx context.Context, refID string, sleepMs int) backend.DataResponse {
	if sleepMs <= 0 {
		sleepMs = 5000
	}
	timer := time.NewTimer(time.Duration(sleepMs) * time.Millisecond)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		log.DefaultLogger.Info("slow query cancelled", "refId", refID, "error", ctx.Err().Error())
		return backend.ErrDataResponseWithSource(backend.StatusTimeout, backend.ErrorSourceDownstream,
			"the slow query was cancelled: "+ctx.Err().Error())
	case <-timer.C:
	}
	frame := data.NewFrame("slow",
		data.NewField("sleptMs", nil, []int64{int64(sleepMs)}),
	)
	frame.RefID = refID
	return backend.DataResponse{Frames: data.Frames{frame}}
}
