// Command dataplane is a measurement, not a product component. It answers issue 15 item 3's
// "if Python cannot get there, say what can": the gateway's per-query work for the common
// case of POST /api/ds/query, written in Go, so the gateway benchmark
// (benchmarks/gateway/bench_gateway.py) can put its CPU per query and added latency beside
// the Python gateway's on the same plugin, body and load.
//
// What it does per request, and what the Python gateway does too:
//   - reads at most -max-body bytes of the body (413 beyond);
//   - parses {"from", "to", "queries": [...]} and validates each query's refId, queryType,
//     maxDataPoints, intervalMs and datasource;
//   - groups the queries by datasource uid and looks each uid up in a table loaded at start
//     from a JSON file (-table; 404 for an unknown uid);
//   - builds a pluginv2.QueryDataRequest with the datasource's PluginContext and the
//     queries (the query object itself, compacted, as the query's JSON);
//   - calls QueryData under a deadline over one long-lived grpc-go ClientConn per endpoint,
//     every datasource of a request concurrently;
//   - writes Grafana's {"results": {"<refId>": {"status": ..., "frames": [...]}}}, the JSON
//     frames spliced in byte for byte as the plugin sent them; 400 overall if any failed.
//
// What it leaves out, so its figures are a floor for a Go gateway rather than a gateway:
// authentication and RBAC (every caller is anonymous, as the benchmark runs the Python
// gateway with --anonymous), relative times ("now-6h": from and to must be epoch
// milliseconds, as strings or numbers), Arrow frames (JSON frames are asked for and passed
// through; a plugin answering in Arrow gets an error result), forwarded headers, metrics,
// tracing, retries, admission limits and the watch of the cluster that fills the table.
//
//	dataplane -table table.json -addr 127.0.0.1:0
//
// prints "listening on http://<host:port>" once it accepts requests.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// tableFile is the -table file: what the operator's routing table would know of each
// datasource, plus what every PluginContext carries.
type tableFile struct {
	GrafanaConfig map[string]string     `json:"grafanaConfig"`
	UserAgent     string                `json:"userAgent"`
	Datasources   map[string]datasource `json:"datasources"` // by uid
}

type datasource struct {
	Endpoint      string   `json:"endpoint"` // host:port of the plugin's gRPC server
	PluginID      string   `json:"pluginId"`
	PluginVersion string   `json:"pluginVersion"`
	OrgID         int64    `json:"orgId"`
	Namespace     string   `json:"namespace"`
	Settings      settings `json:"settings"`
}

// settings is the datasource's DataSourceInstanceSettings as JSON.
type settings struct {
	ID                      int64             `json:"id"`
	Name                    string            `json:"name"`
	URL                     string            `json:"url"`
	User                    string            `json:"user"`
	Database                string            `json:"database"`
	BasicAuthEnabled        bool              `json:"basicAuthEnabled"`
	BasicAuthUser           string            `json:"basicAuthUser"`
	JSONData                json.RawMessage   `json:"jsonData"`
	DecryptedSecureJSONData map[string]string `json:"decryptedSecureJsonData"`
	LastUpdatedMS           int64             `json:"lastUpdatedMS"`
	APIVersion              string            `json:"apiVersion"`
}

// route is one datasource ready for calls: its client and the PluginContext every query of
// it shares (built once here, as the Python gateway caches its contexts).
type route struct {
	pluginID string
	client   pluginv2.DataClient
	context  *pluginv2.PluginContext
}

// loadTable reads the table and dials each endpoint once. grpc.NewClient connects lazily
// and its ClientConn multiplexes all calls over one HTTP/2 connection, so the pool is one
// ClientConn per endpoint, shared by every request.
func loadTable(path string, maxMessage int) (map[string]*route, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file tableFile
	if err := json.Unmarshal(raw, &file); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	conns := map[string]*grpc.ClientConn{}
	routes := make(map[string]*route, len(file.Datasources))
	for uid, ds := range file.Datasources {
		conn, ok := conns[ds.Endpoint]
		if !ok {
			conn, err = grpc.NewClient(ds.Endpoint,
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage)))
			if err != nil {
				return nil, fmt.Errorf("datasource %q: %w", uid, err)
			}
			conns[ds.Endpoint] = conn
		}
		routes[uid] = &route{pluginID: ds.PluginID, client: pluginv2.NewDataClient(conn),
			context: baseContext(uid, ds, file.GrafanaConfig, file.UserAgent)}
	}
	return routes, nil
}

func baseContext(uid string, ds datasource, config map[string]string,
	userAgent string) *pluginv2.PluginContext {
	s := ds.Settings
	jsonData := []byte(s.JSONData)
	if len(jsonData) == 0 {
		jsonData = []byte("{}")
	}
	return &pluginv2.PluginContext{
		OrgId: ds.OrgID, PluginId: ds.PluginID, PluginVersion: ds.PluginVersion,
		GrafanaConfig: config, UserAgent: userAgent, Namespace: ds.Namespace,
		DataSourceInstanceSettings: &pluginv2.DataSourceInstanceSettings{
			Id: s.ID, Name: s.Name, Url: s.URL, User: s.User, Database: s.Database,
			BasicAuthEnabled: s.BasicAuthEnabled, BasicAuthUser: s.BasicAuthUser,
			JsonData: jsonData, DecryptedSecureJsonData: s.DecryptedSecureJSONData,
			LastUpdatedMS: s.LastUpdatedMS, Uid: uid, ApiVersion: s.APIVersion,
		},
	}
}

// withUser is the shared context with the caller filled in. A new message that points at
// the shared (read-only) parts: copying a protobuf struct by value is not allowed.
func withUser(base *pluginv2.PluginContext, login string) *pluginv2.PluginContext {
	if login == "" {
		return base // anonymous: Grafana sends no user
	}
	return &pluginv2.PluginContext{
		OrgId: base.OrgId, PluginId: base.PluginId, PluginVersion: base.PluginVersion,
		GrafanaConfig: base.GrafanaConfig, UserAgent: base.UserAgent,
		Namespace: base.Namespace, DataSourceInstanceSettings: base.DataSourceInstanceSettings,
		User: &pluginv2.User{Login: login, Name: login},
	}
}

type server struct {
	routes  map[string]*route
	maxBody int64
	limits  limits
	timeout time.Duration
}

// userHeader names the caller. A stand-in for the identity that authentication would give:
// this measurement authenticates nobody, and a real data plane must not trust a header.
const userHeader = "X-Dataplane-User"

func (s *server) query(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, &httpError{http.StatusMethodNotAllowed, "use POST"})
		return
	}
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		writeError(w, err)
		return
	}
	parsed, err := parseQueryRequest(body, s.limits)
	if err != nil {
		writeError(w, err)
		return
	}
	// Every uid is known before any call starts: a request naming a missing datasource does
	// no work at all.
	routes := make([]*route, len(parsed.groups))
	for i, g := range parsed.groups {
		if routes[i] = s.routes[g.uid]; routes[i] == nil {
			writeError(w, &httpError{http.StatusNotFound, fmt.Sprintf(
				"Data source not found: no datasource has uid %q", g.uid)})
			return
		}
	}
	login := r.Header.Get(userHeader)
	results := make([]map[string]result, len(parsed.groups))
	call := func(i int) {
		g, rt := parsed.groups[i], routes[i]
		ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
		defer cancel()
		reply, err := rt.client.QueryData(ctx, &pluginv2.QueryDataRequest{
			PluginContext: withUser(rt.context, login), Queries: g.queries,
			Format: pluginv2.DataFrameFormat_JSON})
		if err != nil {
			results[i] = callFailed(g, rt.pluginID, err)
			return
		}
		results[i] = fromReply(reply)
	}
	if len(parsed.groups) == 1 {
		call(0) // the common case: no goroutine to start and wait for
	} else {
		done := make(chan struct{}, len(parsed.groups))
		for i := range parsed.groups {
			go func() { call(i); done <- struct{}{} }()
		}
		for range parsed.groups {
			<-done
		}
	}
	merged := results[0]
	for _, more := range results[1:] {
		for ref, res := range more {
			merged[ref] = res
		}
	}
	answer, code := encodeResults(merged)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(answer)))
	w.WriteHeader(code)
	_, _ = w.Write(answer)
}

// readBody reads the whole body, refusing it as soon as it passes max bytes: a caller
// cannot make the data plane hold more than max bytes for it.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	tooLarge := &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf(
		"Request body too large: POST /api/ds/query accepts at most %d bytes", max)}
	if r.ContentLength > max {
		return nil, tooLarge // said so up front: not a byte read
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var limit *http.MaxBytesError
	switch {
	case errors.As(err, &limit):
		return nil, tooLarge
	case err != nil:
		return nil, &httpError{http.StatusBadRequest, "reading the body: " + err.Error()}
	}
	return body, nil
}

// callFailed is a datasource's whole call gone wrong: each of its queries says why, with
// the status the Python gateway gives the same gRPC code.
func callFailed(g *group, pluginID string, err error) map[string]result {
	code, message := http.StatusInternalServerError, "Query data error: "+status.Convert(err).Message()
	switch status.Code(err) {
	case codes.Unavailable:
		code, message = http.StatusServiceUnavailable, "Plugin unavailable: "+pluginID
	case codes.Unimplemented:
		code, message = http.StatusNotFound, "Not found"
	case codes.DeadlineExceeded:
		code, message = http.StatusGatewayTimeout, message+": the plugin did not answer in time"
	case codes.ResourceExhausted:
		code, message = http.StatusServiceUnavailable, message+": plugin resources exhausted"
	}
	out := make(map[string]result, len(g.queries))
	for _, q := range g.queries {
		out[q.RefId] = result{status: code, err: message, errorSource: "plugin", noFrames: true}
	}
	return out
}

// fromReply keeps each DataResponse's frames as they are (JSON, as asked for).
func fromReply(reply *pluginv2.QueryDataResponse) map[string]result {
	out := make(map[string]result, len(reply.Responses))
	for ref, r := range reply.Responses {
		res := result{status: int(r.Status), err: r.Error, frames: r.Frames}
		if r.Error != "" {
			res.errorSource = r.ErrorSource
		}
		if r.Format != pluginv2.DataFrameFormat_JSON && len(r.Frames) > 0 {
			res = result{status: http.StatusBadGateway, errorSource: "plugin",
				err: "the plugin answered with Arrow frames; this data plane passes JSON frames only"}
		}
		out[ref] = res
	}
	return out
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "host:port to serve on")
	tablePath := flag.String("table", "", "JSON file: uid -> endpoint, plugin, settings, org")
	maxBody := flag.Int64("max-body", 4<<20, "bytes a query body may have (413 beyond)")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline of each QueryData call")
	procs := flag.Int("procs", 0, "GOMAXPROCS: OS threads running Go code at once (0: Go's default, one per core)")
	profiling := flag.Bool("pprof", false, "serve Go's CPU profiler under /debug/pprof/ (for the benchmark's --profile)")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	if *tablePath == "" {
		log.Fatal("dataplane: -table is required")
	}
	routes, err := loadTable(*tablePath, 1<<31-1)
	if err != nil {
		log.Fatal("dataplane: ", err)
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal("dataplane: ", err)
	}
	srv := &server{routes: routes, maxBody: *maxBody, limits: defaultLimits, timeout: *timeout}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/ds/query", srv.query)
	if *profiling {
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	fmt.Printf("listening on http://%s\n", listener.Addr())
	_ = os.Stdout.Sync()
	httpServer := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 90 * time.Second}
	log.Fatal(httpServer.Serve(listener))
}
