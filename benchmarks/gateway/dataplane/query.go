package main

// The request parsed into per-datasource QueryData calls, and the results written as
// Grafana writes them: the same rules as the Python gateway's gateway/query.py for the
// cases this measurement handles.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
)

const (
	defaultMaxDataPoints = 100
	defaultIntervalMS    = 1000
	// Plugins turn times into nanoseconds in an int64, which ends in April 2262.
	maxEpochMS = math.MaxInt64 / 1_000_000
)

type limits struct {
	queriesPerRequest int
	maxDataPoints     int64
}

var defaultLimits = limits{queriesPerRequest: 100, maxDataPoints: 1_000_000}

// Datasource uids Grafana handles itself; no plugin serves them.
var builtinUIDs = map[string]bool{"__expr__": true, "grafana": true, "-- Grafana --": true,
	"-- Mixed --": true, "-- Dashboard --": true}

// httpError ends a request with Grafana's {"message": ..., "statusCode": ...}.
type httpError struct {
	status  int
	message string
}

func (e *httpError) Error() string { return e.message }

func bad(format string, args ...any) *httpError {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, err error) {
	e, ok := err.(*httpError)
	if !ok {
		e = &httpError{http.StatusInternalServerError, err.Error()}
	}
	body, _ := json.Marshal(map[string]any{"message": e.message, "statusCode": e.status})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}

// group is the queries of one datasource: one QueryData call.
type group struct {
	uid     string
	queries []*pluginv2.DataQuery
}

type parsedRequest struct {
	groups []*group // in the order their datasources first appear
}

// The body's outer shape. The queries stay raw: each is decoded for the fields the gateway
// reads and also handed to the plugin whole, as its JSON.
type requestBody struct {
	From    json.RawMessage   `json:"from"`
	To      json.RawMessage   `json:"to"`
	Queries []json.RawMessage `json:"queries"`
}

// queryFields are the fields of a query the gateway itself reads. Pointers tell an absent
// or null value (the default applies) from a zero.
type queryFields struct {
	RefID         *string         `json:"refId"`
	QueryType     *string         `json:"queryType"`
	MaxDataPoints *float64        `json:"maxDataPoints"`
	IntervalMS    *float64        `json:"intervalMs"`
	Datasource    json.RawMessage `json:"datasource"`
}

func parseQueryRequest(body []byte, lim limits) (*parsedRequest, error) {
	var payload requestBody
	if err := json.Unmarshal(body, &payload); err != nil {
		return nil, bad("the body is not a JSON object {\"from\", \"to\", \"queries\"}: %v", err)
	}
	if len(payload.Queries) == 0 {
		return nil, bad("queries must be a non-empty list")
	}
	if len(payload.Queries) > lim.queriesPerRequest {
		return nil, bad("%d queries in one request; at most %d are accepted: split them over "+
			"several requests", len(payload.Queries), lim.queriesPerRequest)
	}
	from, err := epochMS(payload.From, "from")
	if err != nil {
		return nil, err
	}
	to, err := epochMS(payload.To, "to")
	if err != nil {
		return nil, err
	}
	if from > to {
		return nil, bad("from (%d) is after to (%d); swap them", from, to)
	}
	window := &pluginv2.TimeRange{FromEpochMS: from, ToEpochMS: to} // shared: read-only
	parsed := &parsedRequest{}
	byUID := map[string]*group{}
	seen := make(map[string]bool, len(payload.Queries))
	for i, raw := range payload.Queries {
		var fields queryFields
		if err := json.Unmarshal(raw, &fields); err != nil {
			return nil, bad("queries[%d] must be a JSON object with a string refId and "+
				"queryType and numeric maxDataPoints and intervalMs: %v", i, err)
		}
		uid, err := datasourceUID(fields.Datasource, i)
		if err != nil {
			return nil, err
		}
		refID := "A"
		if fields.RefID != nil && *fields.RefID != "" {
			refID = *fields.RefID
		}
		if seen[refID] {
			return nil, bad("refId %q is used twice; give every query its own refId", refID)
		}
		seen[refID] = true
		maxPoints, err := boundedInt(fields.MaxDataPoints, defaultMaxDataPoints, lim.maxDataPoints,
			i, "maxDataPoints")
		if err != nil {
			return nil, err
		}
		interval, err := boundedInt(fields.IntervalMS, defaultIntervalMS, maxEpochMS, i, "intervalMs")
		if err != nil {
			return nil, err
		}
		// The query as the plugin sees it: the caller's object, whitespace removed (the
		// Python gateway re-encodes it compactly too). Compact also checks it is JSON.
		var model bytes.Buffer
		model.Grow(len(raw))
		if err := json.Compact(&model, raw); err != nil {
			return nil, bad("queries[%d]: %v", i, err)
		}
		queryType := ""
		if fields.QueryType != nil {
			queryType = *fields.QueryType
		}
		g := byUID[uid]
		if g == nil {
			g = &group{uid: uid}
			byUID[uid] = g
			parsed.groups = append(parsed.groups, g)
		}
		g.queries = append(g.queries, &pluginv2.DataQuery{RefId: refID, QueryType: queryType,
			MaxDataPoints: maxPoints, IntervalMS: interval, TimeRange: window,
			Json: model.Bytes()})
	}
	return parsed, nil
}

// epochMS reads from or to: epoch milliseconds as a string ("1700000000000") or a number.
// Relative times ("now-6h") are the Python gateway's job; this measurement refuses them.
func epochMS(raw json.RawMessage, field string) (int64, error) {
	text := string(raw)
	switch {
	case len(raw) == 0 || text == "null":
		return 0, bad("%s is missing: give epoch milliseconds, as a string or a number", field)
	case raw[0] == '"':
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, bad("%s: %v", field, err)
		}
		if text == "" || len(text) > 15 || strings.Trim(text, "0123456789") != "" {
			return 0, bad("%s=%s is not epoch milliseconds (relative times such as "+
				"\"now-6h\" are not handled by this data plane)", field, raw)
		}
	}
	value, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(value) || value < 0 || value > maxEpochMS {
		return 0, bad("%s=%s is out of range: use epoch milliseconds from 0 to %d, as a "+
			"string or a number", field, raw, int64(maxEpochMS))
	}
	return int64(value), nil
}

// datasourceUID reads {"uid": "..."} or, as pre-8.3 dashboards send it, a plain string.
func datasourceUID(raw json.RawMessage, index int) (string, error) {
	var uid string
	if len(raw) > 0 && raw[0] == '{' {
		var ref struct {
			UID string `json:"uid"`
		}
		if err := json.Unmarshal(raw, &ref); err != nil {
			return "", bad("queries[%d].datasource: %v", index, err)
		}
		uid = ref.UID
	} else if len(raw) > 0 && raw[0] == '"' {
		_ = json.Unmarshal(raw, &uid) // already checked as JSON by the outer decode
	}
	if uid == "" {
		return "", bad("queries[%d] has no datasource: set \"datasource\": {\"uid\": \"<uid>\"}",
			index)
	}
	if builtinUIDs[uid] {
		return "", bad("queries[%d] uses datasource %q, which is built into Grafana; only "+
			"plugin datasources are served", index, uid)
	}
	return uid, nil
}

func boundedInt(value *float64, fallback, highest int64, index int, key string) (int64, error) {
	if value == nil {
		return fallback, nil
	}
	if *value < 0 || *value > float64(highest) {
		return 0, bad("queries[%d].%s=%v is out of range: use a number from 0 to %d", index,
			key, *value, highest)
	}
	return int64(*value), nil
}

// result is one refId's outcome; frames are JSON already, spliced in as they are.
type result struct {
	status      int
	err         string
	errorSource string
	frames      [][]byte
	// Grafana writes "frames": [] for every answer a plugin gave and no "frames" key for a
	// datasource that failed as a whole.
	noFrames bool
}

// encodeResults writes {"results": {...}} with refIds sorted, and the overall status:
// Grafana answers 400 when any result carries an error.
func encodeResults(results map[string]result) ([]byte, int) {
	refs := make([]string, 0, len(results))
	size := 32
	for ref, r := range results {
		refs = append(refs, ref)
		size += len(ref) + len(r.err) + 64
		for _, f := range r.frames {
			size += len(f) + 1
		}
	}
	slices.Sort(refs)
	code := http.StatusOK
	out := make([]byte, 0, size)
	out = append(out, `{"results":{`...)
	for i, ref := range refs {
		r := results[ref]
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, ref)
		out = append(out, ":{"...)
		if r.err != "" {
			code = http.StatusBadRequest
			out = append(out, `"error":`...)
			out = appendString(out, r.err)
			out = append(out, `,"errorSource":`...)
			out = appendString(out, r.errorSource)
			out = append(out, ',')
		}
		out = append(out, `"status":`...)
		out = strconv.AppendInt(out, int64(resultStatus(r.status)), 10)
		if !r.noFrames {
			out = append(out, `,"frames":[`...)
			for j, f := range r.frames {
				if j > 0 {
					out = append(out, ',')
				}
				out = append(out, f...)
			}
			out = append(out, ']')
		}
		out = append(out, '}')
	}
	return append(out, "}}"...), code
}

// resultStatus: Grafana keeps 100-599 and reads anything else as 500, error or not (both
// SDKs send 200 for success).
func resultStatus(status int) int {
	if status >= 100 && status <= 599 {
		return status
	}
	return http.StatusInternalServerError
}

// appendString appends s as a JSON string (json.Marshal of a string cannot fail).
func appendString(out []byte, s string) []byte {
	quoted, _ := json.Marshal(s)
	return append(out, quoted...)
}
