package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"google.golang.org/grpc"
)

func TestParseQueryRequest(t *testing.T) {
	type query struct {
		uid, ref, queryType, json string
		maxPoints, interval       int64
	}
	cases := []struct {
		name  string
		body  string
		want  []query // in group order, then query order
		from  int64
		error string // a part of the 400's message; "" for success
	}{
		{name: "the benchmark's body, epoch strings",
			body: `{"from": "1700000000000", "to": "1700000600000", "queries": [{"refId": "A",
				"datasource": {"uid": "bench"}, "queryType": "randomWalk", "seed": 1,
				"maxDataPoints": 10}]}`,
			from: 1700000000000,
			want: []query{{"bench", "A", "randomWalk", `{"refId":"A","datasource":{"uid":"bench"},` +
				`"queryType":"randomWalk","seed":1,"maxDataPoints":10}`, 10, 1000}}},
		{name: "epoch numbers, defaults, grouped by uid in order of appearance",
			body: `{"from": 5, "to": 6, "queries": [{"datasource": {"uid": "b"}},
				{"refId": "B", "datasource": "a", "intervalMs": 60000, "maxDataPoints": null},
				{"refId": "C", "datasource": {"uid": "b"}}]}`,
			from: 5,
			want: []query{
				{"b", "A", "", `{"datasource":{"uid":"b"}}`, 100, 1000},
				{"b", "C", "", `{"refId":"C","datasource":{"uid":"b"}}`, 100, 1000},
				{"a", "B", "", `{"refId":"B","datasource":"a","intervalMs":60000,"maxDataPoints":null}`, 100, 60000},
			}},
		{name: "not JSON", body: `{"from":`, error: "not a JSON object"},
		{name: "not an object", body: `[1]`, error: "not a JSON object"},
		{name: "no queries", body: `{"from": "1", "to": "2", "queries": []}`, error: "non-empty"},
		{name: "relative time", body: `{"from": "now-6h", "to": "now", "queries": [{}]}`,
			error: "relative times"},
		{name: "missing to", body: `{"from": "1", "queries": [{}]}`, error: "to is missing"},
		{name: "negative time", body: `{"from": -1, "to": 2, "queries": [{}]}`, error: "out of range"},
		{name: "from after to", body: `{"from": 3, "to": 2, "queries": [{}]}`, error: "swap them"},
		{name: "no datasource", body: `{"from": 1, "to": 2, "queries": [{"refId": "A"}]}`,
			error: "queries[0] has no datasource"},
		{name: "built-in datasource",
			body:  `{"from": 1, "to": 2, "queries": [{"datasource": {"uid": "__expr__"}}]}`,
			error: "built into Grafana"},
		{name: "refId twice",
			body:  `{"from": 1, "to": 2, "queries": [{"datasource": "a"}, {"datasource": "b"}]}`,
			error: `refId "A" is used twice`},
		{name: "refId not a string",
			body:  `{"from": 1, "to": 2, "queries": [{"refId": 1, "datasource": "a"}]}`,
			error: "queries[0] must be a JSON object with a string refId"},
		{name: "maxDataPoints out of range",
			body:  `{"from": 1, "to": 2, "queries": [{"datasource": "a", "maxDataPoints": -1}]}`,
			error: "queries[0].maxDataPoints=-1 is out of range"},
		{name: "too many queries",
			body: `{"from": 1, "to": 2, "queries": [` +
				strings.Repeat(`{},`, defaultLimits.queriesPerRequest) + `{}]}`,
			error: "at most 100 are accepted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parsed, err := parseQueryRequest([]byte(c.body), defaultLimits)
			if c.error != "" {
				e, ok := err.(*httpError)
				if !ok || e.status != http.StatusBadRequest || !strings.Contains(e.message, c.error) {
					t.Fatalf("want a 400 saying %q, got %v", c.error, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []query
			for _, g := range parsed.groups {
				for _, q := range g.queries {
					if q.TimeRange.FromEpochMS != c.from {
						t.Errorf("from = %d, want %d", q.TimeRange.FromEpochMS, c.from)
					}
					got = append(got, query{g.uid, q.RefId, q.QueryType, string(q.Json),
						q.MaxDataPoints, q.IntervalMS})
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("query %d: got %+v, want %+v", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestEncodeResults(t *testing.T) {
	frame := []byte(`{"schema":{"fields":[]},"data":{"values":[]}}`)
	cases := []struct {
		name    string
		results map[string]result
		want    string
		status  int
	}{
		{name: "frames spliced in as they came",
			results: map[string]result{"A": {status: 200, frames: [][]byte{frame, frame}}},
			want:    `{"results":{"A":{"status":200,"frames":[` + string(frame) + `,` + string(frame) + `]}}}`,
			status:  200},
		{name: "no frames is an empty list; status 0 reads as 500",
			results: map[string]result{"A": {}},
			want:    `{"results":{"A":{"status":500,"frames":[]}}}`, status: 200},
		{name: "refIds sorted; an error makes the answer 400 and is escaped",
			results: map[string]result{
				"B": {status: 200, frames: [][]byte{frame}},
				"A": {status: 504, err: `late "again"`, errorSource: "plugin", noFrames: true}},
			want: `{"results":{"A":{"error":"late \"again\"","errorSource":"plugin","status":504},` +
				`"B":{"status":200,"frames":[` + string(frame) + `]}}}`,
			status: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, status := encodeResults(c.results)
			if string(got) != c.want || status != c.status {
				t.Fatalf("got %d %s\nwant %d %s", status, got, c.status, c.want)
			}
			if !json.Valid(got) {
				t.Fatalf("not JSON: %s", got)
			}
		})
	}
}

// fakePlugin answers every query with one JSON frame naming what it was sent.
type fakePlugin struct {
	pluginv2.UnimplementedDataServer
	seen chan *pluginv2.QueryDataRequest
}

func (f *fakePlugin) QueryData(_ context.Context, req *pluginv2.QueryDataRequest) (*pluginv2.QueryDataResponse, error) {
	f.seen <- req
	out := &pluginv2.QueryDataResponse{Responses: map[string]*pluginv2.DataResponse{}}
	for _, q := range req.Queries {
		out.Responses[q.RefId] = &pluginv2.DataResponse{Status: 200,
			Format: pluginv2.DataFrameFormat_JSON, Frames: [][]byte{[]byte(`{"ref":"` + q.RefId + `"}`)}}
	}
	return out, nil
}

func TestServe(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plugin := &fakePlugin{seen: make(chan *pluginv2.QueryDataRequest, 10)}
	grpcServer := grpc.NewServer()
	pluginv2.RegisterDataServer(grpcServer, plugin)
	go func() { _ = grpcServer.Serve(listener) }()
	defer grpcServer.Stop()
	table := filepath.Join(t.TempDir(), "table.json")
	if err := os.WriteFile(table, []byte(`{"userAgent": "Grafana/12.3.0 (linux; amd64)",
		"datasources": {"ds": {"endpoint": "`+listener.Addr().String()+`", "pluginId": "p",
		"orgId": 1, "settings": {"id": 7, "name": "DS", "jsonData": {"k": 1}}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	routes, err := loadTable(table, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{routes: routes, maxBody: 200, limits: defaultLimits, timeout: 5 * time.Second}
	cases := []struct {
		name, body, user string
		status           int
		answer           string
		noLength         bool // sent without Content-Length: cut off while reading
	}{
		{name: "answered", body: `{"from": 1, "to": 2, "queries": [{"datasource": "ds"}]}`,
			user: "ann", status: 200, answer: `{"results":{"A":{"status":200,"frames":[{"ref":"A"}]}}}`},
		{name: "unknown uid", body: `{"from": 1, "to": 2, "queries": [{"datasource": "nope"}]}`,
			status: 404, answer: `no datasource has uid \"nope\"`},
		{name: "too large", body: `{"from": 1, "to": 2, "queries": [{"x": "` +
			strings.Repeat("x", 200) + `"}]}`, status: 413, answer: "at most 200 bytes"},
		{name: "too large, no length", body: `{"from": 1, "to": 2, "queries": [{"x": "` +
			strings.Repeat("x", 200) + `"}]}`, status: 413, answer: "at most 200 bytes",
			noLength: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/api/ds/query", strings.NewReader(c.body))
			if c.noLength {
				req.ContentLength = -1
			}
			if c.user != "" {
				req.Header.Set(userHeader, c.user)
			}
			w := httptest.NewRecorder()
			srv.query(w, req)
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.answer) {
				t.Fatalf("got %d %s, want %d with %s", w.Code, w.Body, c.status, c.answer)
			}
			if c.status != 200 {
				return
			}
			sent := <-plugin.seen
			ctx := sent.PluginContext
			if ctx.OrgId != 1 || ctx.PluginId != "p" || ctx.User.GetLogin() != c.user ||
				ctx.DataSourceInstanceSettings.Uid != "ds" ||
				string(ctx.DataSourceInstanceSettings.JsonData) != `{"k": 1}` ||
				sent.Format != pluginv2.DataFrameFormat_JSON {
				t.Fatalf("the plugin was sent %v", sent)
			}
		})
	}
}
