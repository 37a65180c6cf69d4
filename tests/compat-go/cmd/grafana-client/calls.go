package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Result is the JSON summary of one call. Only the fields the call fills are printed.
type Result struct {
	Call      string                   `json:"call"`
	Error     *RPCError                `json:"error,omitempty"`
	Status    any                      `json:"status,omitempty"`
	Message   string                   `json:"message,omitempty"`
	Details   json.RawMessage          `json:"details,omitempty"`
	Responses map[string]QueryResponse `json:"responses,omitempty"`
	Headers   map[string][]string      `json:"headers,omitempty"`
	Chunks    []string                 `json:"chunks,omitempty"`
	Body      string                   `json:"body,omitempty"`
	Metrics   string                   `json:"metrics,omitempty"`
	Data      json.RawMessage          `json:"data,omitempty"`
	Packets   []FrameSummary           `json:"packets,omitempty"`
	// Peer is the address that answered (only with --peers, or in repeat mode's counts).
	Peer string `json:"peer,omitempty"`
	// AnsweredBy is the value of the call's answeredBy key in the reply (health details or a
	// JSON resource body), when the plan asks for it.
	AnsweredBy string `json:"answeredBy,omitempty"`
}

// RPCError is a failed gRPC call as Grafana sees it.
type RPCError struct {
	Code        string `json:"code"`
	Message     string `json:"message"`
	ErrorSource string `json:"errorSource,omitempty"`
}

// QueryResponse is one refId's DataResponse after decoding.
type QueryResponse struct {
	Status      int            `json:"status"`
	Format      string         `json:"format"`
	Error       string         `json:"error,omitempty"`
	ErrorSource string         `json:"errorSource,omitempty"`
	Frames      []FrameSummary `json:"frames"`
}

// FrameSummary is enough of a decoded frame for a test to assert on.
type FrameSummary struct {
	Name   string          `json:"name"`
	RefID  string          `json:"refId"`
	Meta   *data.FrameMeta `json:"meta,omitempty"`
	Rows   int             `json:"rows"`
	Fields []FieldSummary  `json:"fields"`
}

// FieldSummary describes one field and its first few values.
type FieldSummary struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Nullable bool              `json:"nullable"`
	Labels   data.Labels       `json:"labels,omitempty"`
	Config   *data.FieldConfig `json:"config,omitempty"`
	Values   []any             `json:"values"`
}

const shownValues = 3

func (s *session) run(ctx context.Context, c Call) Result {
	if c.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(c.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	var r Result
	var err error
	var answered peer.Peer
	s.opts = []grpc.CallOption{grpc.Peer(&answered)}
	switch c.Call {
	case "health":
		r, err = s.health(ctx, c)
	case "query":
		r, err = s.query(ctx, c)
	case "resource":
		r, err = s.callResource(ctx, c)
	case "metrics":
		r, err = s.metrics(ctx)
	case "subscribe":
		r, err = s.subscribe(ctx, c)
	case "stream":
		r, err = s.runStream(ctx, c)
	case "publish":
		r, err = s.publish(ctx, c)
	}
	r.Call = c.Call
	if err != nil {
		r.Error = rpcError(err)
	}
	if answered.Addr != nil {
		r.Peer = answered.Addr.String()
	}
	if c.AnsweredBy != "" {
		r.AnsweredBy = answeredBy(r, c.AnsweredBy)
	}
	return r
}

// answeredBy reads key from the JSON object a health check (details) or a resource call
// (body) returned; "" when there is none.
func answeredBy(r Result, key string) string {
	raw := []byte(r.Details)
	if r.Call == "resource" {
		raw = []byte(r.Body)
	}
	var object map[string]json.RawMessage
	if json.Unmarshal(raw, &object) != nil {
		return ""
	}
	value, ok := object[key]
	if !ok {
		return ""
	}
	var text string
	if json.Unmarshal(value, &text) == nil {
		return text
	}
	return string(value)
}

// rpcError keeps what Grafana keeps of a failed call: code, message and errorSource.
func rpcError(err error) *RPCError {
	st, ok := status.FromError(err)
	if !ok {
		return &RPCError{Code: "Client", Message: err.Error()}
	}
	e := &RPCError{Code: st.Code().String(), Message: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			e.ErrorSource = info.Metadata["errorSource"]
		}
	}
	return e
}

type session struct {
	*connection
	plan *Plan
	// opts go with every RPC of the current call (they record the answering peer).
	opts []grpc.CallOption
}

func (s *session) health(ctx context.Context, c Call) (Result, error) {
	req := &pluginv2.CheckHealthRequest{
		PluginContext: backend.ToProto().PluginContext(s.plan.pluginContext(c)),
		Headers:       map[string]string{},
	}
	resp, err := s.diagnostics.CheckHealth(ctx, req, s.opts...)
	if err != nil {
		return Result{}, err
	}
	res := backend.FromProto().CheckHealthResponse(resp)
	return Result{Status: res.Status.String(), Message: res.Message, Details: res.JSONDetails}, nil
}

func (s *session) query(ctx context.Context, c Call) (Result, error) {
	to := time.Now()
	if c.ToMs != 0 {
		to = time.UnixMilli(c.ToMs)
	}
	from := to.Add(-time.Hour)
	if c.FromMs != 0 {
		from = time.UnixMilli(c.FromMs)
	}
	req := &backend.QueryDataRequest{PluginContext: s.plan.pluginContext(c), Headers: map[string]string{}}
	if c.Format == "json" {
		req.Format = backend.DataFrameFormat_JSON
	}
	for i, raw := range c.Queries {
		q, err := dataQuery(raw, backend.TimeRange{From: from, To: to})
		if err != nil {
			return Result{}, fmt.Errorf("queries[%d]: %w", i, err)
		}
		req.Queries = append(req.Queries, q)
	}
	protoResp, err := s.data.QueryData(ctx, backend.ToProto().QueryDataRequest(req), s.opts...)
	if err != nil {
		return Result{}, err
	}
	// Decode exactly as Grafana does: by each response's format field.
	decoded, err := backend.FromProto().QueryDataResponse(protoResp)
	if err != nil {
		return Result{}, fmt.Errorf("decoding the frames failed: %w", err)
	}
	out := Result{Responses: map[string]QueryResponse{}}
	for refID, dr := range decoded.Responses {
		qr := QueryResponse{
			Status: int(dr.Status),
			Format: strings.ToLower(protoResp.Responses[refID].Format.String()),
			Frames: []FrameSummary{},
		}
		if dr.Error != nil {
			qr.Error, qr.ErrorSource = dr.Error.Error(), string(dr.ErrorSource)
		}
		for _, f := range dr.Frames {
			qr.Frames = append(qr.Frames, summarize(f))
		}
		out.Responses[refID] = qr
	}
	return out, nil
}

// dataQuery reads the standard keys of a query object as Grafana's query parser does; the
// whole object goes to the plugin as the query JSON.
func dataQuery(raw json.RawMessage, tr backend.TimeRange) (backend.DataQuery, error) {
	var std struct {
		RefID         string `json:"refId"`
		QueryType     string `json:"queryType"`
		MaxDataPoints int64  `json:"maxDataPoints"`
		IntervalMs    int64  `json:"intervalMs"`
	}
	if err := json.Unmarshal(raw, &std); err != nil {
		return backend.DataQuery{}, fmt.Errorf("a query must be a JSON object: %w", err)
	}
	q := backend.DataQuery{
		RefID:         std.RefID,
		QueryType:     std.QueryType,
		MaxDataPoints: std.MaxDataPoints,
		Interval:      time.Duration(std.IntervalMs) * time.Millisecond,
		TimeRange:     tr,
		JSON:          raw,
	}
	if q.RefID == "" {
		q.RefID = "A"
	}
	if q.MaxDataPoints == 0 {
		q.MaxDataPoints = 100
	}
	if q.Interval == 0 {
		q.Interval = time.Second
	}
	return q, nil
}

func (s *session) callResource(ctx context.Context, c Call) (Result, error) {
	method := c.Method
	if method == "" {
		method = "GET"
	}
	path, rawQuery, _ := strings.Cut(c.Path, "?")
	req := &backend.CallResourceRequest{
		PluginContext: s.plan.pluginContext(c),
		Path:          strings.TrimPrefix(path, "/"),
		Method:        method,
		URL:           strings.TrimPrefix(c.Path, "/"),
		Headers:       map[string][]string{},
		Body:          c.Body,
	}
	if rawQuery == "" {
		req.URL = req.Path
	}
	stream, err := s.resource.CallResource(ctx, backend.ToProto().CallResourceRequest(req), s.opts...)
	if err != nil {
		return Result{}, err
	}
	var out Result
	for first := true; ; first = false {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, err
		}
		// Grafana takes status and headers from the first message only.
		if first {
			res := backend.FromProto().CallResourceResponse(msg)
			out.Status, out.Headers = res.Status, res.Headers
		}
		out.Chunks = append(out.Chunks, string(msg.Body))
		out.Body += string(msg.Body)
	}
	if out.Chunks == nil {
		return out, errors.New("received empty resource response")
	}
	return out, nil
}

func (s *session) metrics(ctx context.Context) (Result, error) {
	req := &backend.CollectMetricsRequest{PluginContext: backend.PluginContext{PluginID: s.plan.PluginID}}
	resp, err := s.diagnostics.CollectMetrics(ctx, backend.ToProto().CollectMetricsRequest(req), s.opts...)
	if err != nil {
		return Result{}, err
	}
	return Result{Metrics: string(resp.GetMetrics().GetPrometheus())}, nil
}

func (s *session) subscribe(ctx context.Context, c Call) (Result, error) {
	req := &backend.SubscribeStreamRequest{PluginContext: s.plan.pluginContext(c), Path: c.Path, Data: c.Data}
	resp, err := s.stream.SubscribeStream(ctx, backend.ToProto().SubscribeStreamRequest(req), s.opts...)
	if err != nil {
		return Result{}, err
	}
	return Result{Status: resp.Status.String(), Data: nonEmptyJSON(resp.Data)}, nil
}

func (s *session) publish(ctx context.Context, c Call) (Result, error) {
	req := &backend.PublishStreamRequest{PluginContext: s.plan.pluginContext(c), Path: c.Path, Data: c.Data}
	resp, err := s.stream.PublishStream(ctx, backend.ToProto().PublishStreamRequest(req), s.opts...)
	if err != nil {
		return Result{}, err
	}
	return Result{Status: resp.Status.String(), Data: nonEmptyJSON(resp.Data)}, nil
}

// runStream reads c.Packets frames (default 3) and then cancels, as Grafana does when the
// last subscriber leaves.
func (s *session) runStream(ctx context.Context, c Call) (Result, error) {
	want := c.Packets
	if want <= 0 {
		want = 3
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &backend.RunStreamRequest{PluginContext: s.plan.pluginContext(c), Path: c.Path, Data: c.Data}
	stream, err := s.stream.RunStream(ctx, backend.ToProto().RunStreamRequest(req), s.opts...)
	if err != nil {
		return Result{}, err
	}
	// Leave as Grafana does (cancel), then read the stream's end so that it is finished
	// (and its call options, like the answering peer, are complete) before returning.
	defer func() {
		cancel()
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
	var out Result
	var schema *data.Frame
	for len(out.Packets) < want {
		packet, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, err
		}
		frame, err := decodeStreamFrame(packet, schema)
		if err != nil {
			return out, err
		}
		schema = frame
		out.Packets = append(out.Packets, summarize(frame))
	}
	return out, nil
}

// decodeStreamFrame reads a JSON frame packet. Live streams often send the schema once and
// then data-only packets, which are read against the last schema seen.
func decodeStreamFrame(packet *pluginv2.StreamPacket, last *data.Frame) (*data.Frame, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(packet.Data, &probe); err != nil {
		return nil, fmt.Errorf("a stream packet is not a JSON object: %w", err)
	}
	if _, hasSchema := probe["schema"]; !hasSchema && last != nil {
		frame := last.EmptyCopy()
		if err := data.AppendJSONData(frame, packet.Data); err != nil {
			return nil, fmt.Errorf("a data-only stream packet does not fit the schema: %w", err)
		}
		return frame, nil
	}
	var frame data.Frame
	if err := json.Unmarshal(packet.Data, &frame); err != nil {
		return nil, fmt.Errorf("a stream packet is not a JSON data frame: %w", err)
	}
	return &frame, nil
}

func nonEmptyJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if !json.Valid(b) {
		quoted, _ := json.Marshal(string(b))
		return quoted
	}
	return b
}

func summarize(f *data.Frame) FrameSummary {
	rows, _ := f.RowLen()
	fs := FrameSummary{Name: f.Name, RefID: f.RefID, Meta: f.Meta, Rows: rows, Fields: []FieldSummary{}}
	for _, field := range f.Fields {
		sum := FieldSummary{
			Name:     field.Name,
			Type:     field.Type().NonNullableType().ItemTypeString(),
			Nullable: field.Nullable(),
			Labels:   field.Labels,
			Config:   field.Config,
			Values:   []any{},
		}
		for i := 0; i < field.Len() && i < shownValues; i++ {
			sum.Values = append(sum.Values, jsonValue(field, i))
		}
		fs.Fields = append(fs.Fields, sum)
	}
	return fs
}

// jsonValue renders a value so JSON keeps it exact: times as RFC 3339 with nanoseconds,
// special floats as strings.
func jsonValue(field *data.Field, i int) any {
	v, ok := field.ConcreteAt(i)
	if !ok {
		return nil
	}
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case float64:
		return floatValue(x)
	case float32:
		return floatValue(float64(x))
	case json.RawMessage:
		return x
	}
	return v
}

func floatValue(f float64) any {
	b, err := json.Marshal(f)
	if err != nil { // NaN and ±Inf have no JSON number
		return fmt.Sprint(f)
	}
	return json.RawMessage(b)
}
