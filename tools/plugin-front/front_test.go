package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// fakePlugin is a gRPC server like a plugin's go-plugin server: health ("plugin" SERVING),
// a few pluginv2-like methods, and go-plugin's private services, which count the calls
// that reach them.
type fakePlugin struct {
	name     string
	address  string // unix socket path
	server   *grpc.Server
	health   *health.Server
	calls    atomic.Int64 // pluginv2 calls served
	private  atomic.Int64 // calls to go-plugin's own services (must stay 0)
	canceled chan struct{}
}

func startFakePlugin(t *testing.T, name string) *fakePlugin {
	t.Helper()
	p := &fakePlugin{name: name, address: filepath.Join(t.TempDir(), "plugin.sock"),
		canceled: make(chan struct{}, 16)}
	listener, err := net.Listen("unix", p.address)
	if err != nil {
		t.Fatal(err)
	}
	p.health = health.NewServer()
	p.health.SetServingStatus("plugin", healthpb.HealthCheckResponse_SERVING)
	p.server = grpc.NewServer(grpc.UnknownServiceHandler(p.handle),
		grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	healthpb.RegisterHealthServer(p.server, p.health)
	go func() { _ = p.server.Serve(listener) }()
	t.Cleanup(p.server.Stop)
	return p
}

func (p *fakePlugin) handle(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	if strings.HasPrefix(method, "/plugin.") || strings.HasPrefix(method, "/grpc.reflection") {
		p.private.Add(1)
		return nil
	}
	in := &wrapperspb.StringValue{}
	if err := ss.RecvMsg(in); err != nil {
		return err
	}
	p.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ss.Context())
	_, hasDeadline := ss.Context().Deadline()
	switch method {
	case "/pluginv2.Data/QueryData":
		_ = ss.SetHeader(metadata.Pairs("x-plugin", p.name))
		ss.SetTrailer(metadata.Pairs("x-trailer", "done", "x-bin-bin", "\x00\x01"))
		reply := fmt.Sprintf("%s:%s:x-test=%s:deadline=%v:ua=%v", p.name, in.Value,
			strings.Join(md.Get("x-test"), ","), hasDeadline, len(md.Get("user-agent")))
		return ss.SendMsg(wrapperspb.String(reply))
	case "/pluginv2.Diagnostics/CheckHealth":
		st, _ := status.New(codes.FailedPrecondition, "not configured: "+in.Value).
			WithDetails(wrapperspb.String("detail"))
		ss.SetTrailer(metadata.Pairs("x-why", "config"))
		return st.Err()
	case "/pluginv2.Resource/CallResource":
		for i := range 3 {
			if err := ss.SendMsg(wrapperspb.String(fmt.Sprintf("chunk-%d", i))); err != nil {
				return err
			}
		}
		ss.SetTrailer(metadata.Pairs("x-chunks", "3"))
		return nil
	case "/pluginv2.Data/Slow":
		<-ss.Context().Done()
		p.canceled <- struct{}{}
		return ss.Context().Err()
	case "/pluginv2.Data/Big":
		return ss.SendMsg(wrapperspb.String(strings.Repeat("b", len(in.Value))))
	case "/pluginv2.Data/Chunks":
		n, _ := strconv.Atoi(in.Value)
		filler := strings.Repeat("c", 32<<10-4)
		for i := range n {
			if err := ss.SendMsg(wrapperspb.String(fmt.Sprintf("%04d", i) + filler)); err != nil {
				return err
			}
		}
		return nil
	}
	return status.Errorf(codes.Unimplemented, "fake plugin has no %s", method)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// startFront runs a front for the test; cfg.plugin and cfg.listen must be set.
func startFront(t *testing.T, cfg config) *front {
	t.Helper()
	if cfg.metricsListen == "" {
		cfg.metricsListen = "127.0.0.1:0"
	}
	if cfg.peerInterval == 0 {
		cfg.peerInterval = 100 * time.Millisecond
	}
	cfg.stopTimeout = time.Second
	f, err := newFront(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	f.serve()
	t.Cleanup(func() { f.stop(time.Second) })
	return f
}

func dial(t *testing.T, address string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20),
			grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func query(ctx context.Context, conn *grpc.ClientConn, value string,
	opts ...grpc.CallOption) (string, error) {
	out := &wrapperspb.StringValue{}
	err := conn.Invoke(ctx, "/pluginv2.Data/QueryData", wrapperspb.String(value), out, opts...)
	return out.Value, err
}

// path is one way a call can take: to the plugin the reply names.
type path struct {
	name   string
	conn   *grpc.ClientConn
	plugin *fakePlugin
	front  *front
}

// paths starts fronts for every way a call can go: the local port (HTTP/2 filter), the
// attach port to its local plugin, and the attach port to a peer's local port (the local
// plugin saying NOT_SERVING, so that every call goes to the peer).
func paths(t *testing.T) []path {
	a := startFakePlugin(t, "a")
	local := startFront(t, config{plugin: "unix:" + a.address, listen: "127.0.0.1:0"})
	b := startFakePlugin(t, "b")
	attachLocal := startFront(t, config{plugin: "unix:" + b.address, listen: "127.0.0.1:0",
		attachListen: "127.0.0.1:0"})
	c, d := startFakePlugin(t, "c"), startFakePlugin(t, "d")
	peer := startFront(t, config{plugin: "unix:" + d.address, listen: "127.0.0.2:0"})
	c.health.SetServingStatus("plugin", healthpb.HealthCheckResponse_NOT_SERVING)
	viaPeer := startFront(t, config{plugin: "unix:" + c.address, listen: "127.0.0.1:0",
		attachListen: "127.0.0.1:0", peers: []string{peer.addresses()["local"]}})
	out := []path{
		{"local port", dial(t, local.addresses()["local"]), a, local},
		{"attach port to its plugin", dial(t, attachLocal.addresses()["attach"]), b, attachLocal},
		{"attach port to a peer", dial(t, viaPeer.addresses()["attach"]), d, viaPeer},
	}
	// Until the peer's connection and health are up, calls go to the local plugin.
	deadline := time.Now().Add(10 * time.Second)
	for viaPeer.metrics.peersReady.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the peer never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out
}

func TestAllowedCallsPassUnchanged(t *testing.T) {
	for _, p := range paths(t) {
		t.Run(p.name, func(t *testing.T) { checkPassThrough(t, p) })
	}
	local := paths(t)[0]
	checkPassThrough(t, local)
	var text bytes.Buffer
	_ = local.front.metrics.write(&text)
	for _, want := range []string{
		`plugin_operator_front_calls_total{port="local",method="/pluginv2.Data/QueryData",code="OK"} 1`,
		`plugin_operator_front_calls_total{port="local",method="/pluginv2.Diagnostics/CheckHealth",code="FailedPrecondition"} 1`,
		`plugin_operator_front_calls_total{port="local",method="/grpc.health.v1.Health/Check",code="OK"} 1`,
		`plugin_operator_front_calls_total{port="local",method="/pluginv2.Resource/CallResource",code="OK"} 1`,
		`plugin_operator_front_open_streams{port="local"} 0`,
		`plugin_operator_host_open_connections 1`,
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, text.String())
		}
	}
}

func checkPassThrough(t *testing.T, p path) {
	conn := p.conn
	ctx := metadata.AppendToOutgoingContext(ctxFor(t), "x-test", "1")
	var header, trailer metadata.MD
	reply, err := query(ctx, conn, "hello", grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if want := p.plugin.name + ":hello:x-test=1:deadline=true:ua=1"; reply != want {
		t.Errorf("reply %q, want %q: metadata or deadline lost on the way", reply, want)
	}
	if got := header.Get("x-plugin"); len(got) != 1 || got[0] != p.plugin.name {
		t.Errorf("response header x-plugin = %v", got)
	}
	if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "done" {
		t.Errorf("trailer x-trailer = %v", got)
	}
	if got := trailer.Get("x-bin-bin"); len(got) != 1 || got[0] != "\x00\x01" {
		t.Errorf("binary trailer x-bin-bin = %q", got)
	}

	// A status with a message, details and trailers comes back as the plugin sent it.
	trailer = nil
	err = conn.Invoke(ctx, "/pluginv2.Diagnostics/CheckHealth", wrapperspb.String("x"),
		&wrapperspb.StringValue{}, grpc.Trailer(&trailer))
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "not configured: x" {
		t.Errorf("status %v %q", st.Code(), st.Message())
	}
	if details := st.Details(); len(details) != 1 ||
		details[0].(*wrapperspb.StringValue).Value != "detail" {
		t.Errorf("status details %v", details)
	}
	if got := trailer.Get("x-why"); len(got) != 1 || got[0] != "config" {
		t.Errorf("error trailer x-why = %v", got)
	}

	// A server stream, message by message, then its trailer.
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true},
		"/pluginv2.Resource/CallResource")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(wrapperspb.String("r")); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	var chunks []string
	for {
		out := &wrapperspb.StringValue{}
		if err := stream.RecvMsg(out); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, out.Value)
	}
	if strings.Join(chunks, ",") != "chunk-0,chunk-1,chunk-2" {
		t.Errorf("stream chunks %v", chunks)
	}
	if got := stream.Trailer().Get("x-chunks"); len(got) != 1 || got[0] != "3" {
		t.Errorf("stream trailer %v", got)
	}

	// Health passes to the plugin's own health service (on the attach port: its own).
	check, err := healthpb.NewHealthClient(conn).Check(ctx,
		&healthpb.HealthCheckRequest{Service: "plugin"})
	if err != nil || check == nil {
		t.Errorf("health %v %v", check, err)
	}
}

func TestLargeMessagesFlowControlAndDeadlines(t *testing.T) {
	for _, p := range paths(t) {
		t.Run(p.name, func(t *testing.T) {
			conn := p.conn
			big := strings.Repeat("x", 20<<20) // beyond gRPC's 4 MiB default both ways
			out := &wrapperspb.StringValue{}
			if err := conn.Invoke(ctxFor(t), "/pluginv2.Data/Big", wrapperspb.String(big),
				out); err != nil {
				t.Fatal(err)
			}
			if len(out.Value) != len(big) {
				t.Errorf("reply of %d bytes, want %d", len(out.Value), len(big))
			}
			// Several large calls at once on one connection share its windows.
			var wg sync.WaitGroup
			for i := range 6 {
				wg.Go(func() {
					payload := strings.Repeat(string(rune('a'+i)), 3<<20)
					reply := &wrapperspb.StringValue{}
					if err := conn.Invoke(ctxFor(t), "/pluginv2.Data/Big",
						wrapperspb.String(payload), reply); err != nil {
						t.Error(err)
					} else if len(reply.Value) != len(payload) {
						t.Errorf("concurrent reply of %d bytes", len(reply.Value))
					}
				})
			}
			wg.Wait()
			// A long stream read slowly: flow control holds the plugin back, nothing is lost.
			stream, err := conn.NewStream(ctxFor(t), &grpc.StreamDesc{ServerStreams: true},
				"/pluginv2.Data/Chunks")
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.SendMsg(wrapperspb.String("300")); err != nil {
				t.Fatal(err)
			}
			_ = stream.CloseSend()
			for i := 0; ; i++ {
				chunk := &wrapperspb.StringValue{}
				if err := stream.RecvMsg(chunk); err == io.EOF {
					if i != 300 {
						t.Errorf("%d chunks, want 300", i)
					}
					break
				} else if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("%04d", i); !strings.HasPrefix(chunk.Value, want) ||
					len(chunk.Value) != 32<<10 {
					t.Fatalf("chunk %d starts %q, %d bytes", i, chunk.Value[:4], len(chunk.Value))
				}
				if i%50 == 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
			// The caller's deadline reaches the plugin, which stops working on the call.
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err = conn.Invoke(ctx, "/pluginv2.Data/Slow", wrapperspb.String(""), out)
			// The caller's own timer and the reset of the expired call race through the
			// front: the caller sees DeadlineExceeded or, if the reset wins, Canceled. (Known:
			// under load the attach port may relay the reset a moment before the caller's own
			// deadline; what matters here is that the call ends on both sides.)
			if code := status.Code(err); code != codes.DeadlineExceeded && code != codes.Canceled {
				t.Errorf("slow call: %v", err)
			}
			select {
			case <-p.plugin.canceled:
			case <-time.After(5 * time.Second):
				t.Error("the plugin never saw the call end")
			}
			// So does a cancellation.
			ctx, cancel = context.WithCancel(context.Background())
			go func() {
				time.Sleep(100 * time.Millisecond)
				cancel()
			}()
			err = conn.Invoke(ctx, "/pluginv2.Data/Slow", wrapperspb.String(""), out)
			if status.Code(err) != codes.Canceled {
				t.Errorf("cancelled call: %v", err)
			}
			select {
			case <-p.plugin.canceled:
			case <-time.After(5 * time.Second):
				t.Error("the plugin never saw the cancellation")
			}
		})
	}
}

func TestGoPluginServicesAreRefused(t *testing.T) {
	plugin := startFakePlugin(t, "a")
	f := startFront(t, config{plugin: "unix:" + plugin.address, listen: "127.0.0.1:0",
		attachListen: "127.0.0.1:0"})
	for _, portName := range []string{"local", "attach"} {
		conn := dial(t, f.addresses()[portName])
		for _, method := range []string{
			"/plugin.GRPCController/Shutdown",
			"/plugin.GRPCStdio/StreamStdio",
			"/plugin.GRPCBroker/StartStream",
			"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
			"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
			"/pluginv2.Data/../plugin.GRPCController/Shutdown",
			"/pluginv2./QueryData",
			"/other.Service/Method",
		} {
			err := conn.Invoke(ctxFor(t), method, &wrapperspb.StringValue{},
				&wrapperspb.StringValue{})
			st := status.Convert(err)
			if st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "only pluginv2.*") {
				t.Errorf("%s on %s: %v %q", method, portName, st.Code(), st.Message())
			}
		}
		// Server streams (as go-plugin's stdio client makes them) are refused on first Recv.
		stream, err := conn.NewStream(ctxFor(t), &grpc.StreamDesc{ServerStreams: true},
			"/plugin.GRPCStdio/StreamStdio")
		if err == nil {
			_ = stream.SendMsg(&wrapperspb.StringValue{})
			err = stream.RecvMsg(&wrapperspb.StringValue{})
		}
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("stdio stream on %s: %v", portName, err)
		}
	}
	if n := plugin.private.Load(); n != 0 {
		t.Errorf("%d refused calls reached the plugin", n)
	}
	// Nothing is kept of answered calls.
	f.filter.mu.Lock()
	for c := range f.filter.conns {
		c.mu.Lock()
		if len(c.streams) != 0 {
			t.Errorf("the local port still tracks %d streams", len(c.streams))
		}
		c.mu.Unlock()
	}
	f.filter.mu.Unlock()
	f.router.mu.Lock()
	for c := range f.router.callers {
		if len(c.streams) != 0 {
			t.Errorf("the attach port still tracks %d streams", len(c.streams))
		}
	}
	f.router.mu.Unlock()
	if _, err := query(ctxFor(t), dial(t, f.addresses()["local"]), "still"); err != nil {
		t.Errorf("the plugin stopped serving: %v", err)
	}
	var text bytes.Buffer
	_ = f.metrics.write(&text)
	for _, want := range []string{
		`plugin_operator_front_refused_calls_total{port="local",service="plugin.GRPCController"} 1`,
		`plugin_operator_front_refused_calls_total{port="attach",service="plugin.GRPCStdio"} 2`,
		`plugin_operator_front_refused_calls_total{port="local",service="other"} 3`,
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, text.String())
		}
	}
}

// balancedPair is plugin a behind the front under test (attach port), and plugin b behind
// a second front whose local port is a peer at 127.0.0.2.
type balancedPair struct {
	a, b         *fakePlugin
	front, other *front
	attach       *grpc.ClientConn
}

func startPair(t *testing.T, extraPeers ...string) balancedPair {
	a, b := startFakePlugin(t, "a"), startFakePlugin(t, "b")
	other := startFront(t, config{plugin: "unix:" + b.address, listen: "127.0.0.2:0"})
	// 127.0.0.1 is "this pod": that entry is replaced by the local plugin.
	peers := append([]string{"127.0.0.1:10000", other.addresses()["local"]}, extraPeers...)
	f := startFront(t, config{plugin: "unix:" + a.address, listen: "127.0.0.1:0",
		attachListen: "127.0.0.1:0", peers: peers, selfIP: net.ParseIP("127.0.0.1")})
	pair := balancedPair{a: a, b: b, front: f, other: other,
		attach: dial(t, f.addresses()["attach"])}
	// Until both connections are up, round robin only has the first one.
	deadline := time.Now().Add(10 * time.Second)
	for a.calls.Load() == 0 || b.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("both replicas never answered: a=%d b=%d", a.calls.Load(), b.calls.Load())
		}
		if _, err := query(ctxFor(t), pair.attach, "warm-up"); err != nil {
			t.Fatal(err)
		}
	}
	return pair
}

func (p balancedPair) calls(t *testing.T, n int) (int64, int64) {
	t.Helper()
	a0, b0 := p.a.calls.Load(), p.b.calls.Load()
	for i := range n {
		if _, err := query(ctxFor(t), p.attach, fmt.Sprint(i)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	return p.a.calls.Load() - a0, p.b.calls.Load() - b0
}

func TestAttachBalancesEachCallOverReplicas(t *testing.T) {
	pair := startPair(t)
	// 127.0.0.1 (this pod) is left out of the peers: the local plugin is reached directly.
	if got := pair.front.peers.addresses(); len(got) != 1 || got[0] != pair.other.addresses()["local"] {
		t.Errorf("peers %v: want only the other replica", got)
	}
	a, b := pair.calls(t, 200) // one client connection
	if a < 80 || b < 80 || a+b != 200 {
		t.Errorf("split a=%d b=%d: want about even", a, b)
	}
	// Concurrent calls on the same connection are spread too.
	a0, b0 := pair.a.calls.Load(), pair.b.calls.Load()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			if _, err := query(ctxFor(t), pair.attach, fmt.Sprint(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if a, b := pair.a.calls.Load()-a0, pair.b.calls.Load()-b0; a < 30 || b < 30 {
		t.Errorf("concurrent split a=%d b=%d", a, b)
	}
	// Where the attach port sent each call, as its metrics say: the plugins' own counts.
	local, remote := pair.front.metrics.balancedLocal.Load(), pair.front.metrics.balancedPeer.Load()
	if int64(local) != pair.a.calls.Load() || int64(remote) != pair.b.calls.Load() {
		t.Errorf("balanced to local %d, to peers %d; plugins served a=%d b=%d", local, remote,
			pair.a.calls.Load(), pair.b.calls.Load())
	}
	var text bytes.Buffer
	_ = pair.front.metrics.write(&text)
	for _, want := range []string{`plugin_operator_front_peers{state="known"} 2`,
		`plugin_operator_front_peers{state="ready"} 2`,
		`plugin_operator_front_balanced_calls_total{to="local"}`} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, text.String())
		}
	}
	// Health on the attach port is this replica's own.
	check, err := healthpb.NewHealthClient(pair.attach).Check(ctxFor(t),
		&healthpb.HealthCheckRequest{Service: "plugin"})
	if err != nil || check.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("attach health %v %v", check, err)
	}
}

func TestADeadPeerIsSkipped(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddress := dead.Addr().String()
	_ = dead.Close() // nothing listens there now
	pair := startPair(t, deadAddress)
	if got := len(pair.front.peers.addresses()); got != 2 {
		t.Errorf("%d peers known, want 2 (the dead one too)", got)
	}
	if known := pair.front.metrics.peersKnown.Load(); known != 3 {
		t.Errorf("%d replicas known, want 3", known)
	}
	if ready := pair.front.metrics.peersReady.Load(); ready != 2 {
		t.Errorf("%d replicas ready, want 2", ready)
	}
	a, b := pair.calls(t, 100)
	if a+b != 100 || a < 30 || b < 30 {
		t.Errorf("split a=%d b=%d", a, b)
	}
	// A replica that goes away while serving: its calls move to the others, none fail.
	pair.other.stop(time.Second)
	a, b = pair.calls(t, 50)
	if a != 50 || b != 0 {
		t.Errorf("after the peer stopped: a=%d b=%d", a, b)
	}
}

func TestAPeerThatIsNotServingGetsNoCalls(t *testing.T) {
	pair := startPair(t)
	pair.b.health.SetServingStatus("plugin", healthpb.HealthCheckResponse_NOT_SERVING)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a, b := pair.calls(t, 20); b == 0 && a == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("calls still reach the replica whose health says NOT_SERVING")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDrainSaysNotServingWhileStillServing(t *testing.T) {
	plugin := startFakePlugin(t, "a")
	f := startFront(t, config{plugin: "unix:" + plugin.address, listen: "127.0.0.1:0"})
	conn := dial(t, f.addresses()["local"])
	client := healthpb.NewHealthClient(conn)
	watch, err := client.Watch(ctxFor(t), &healthpb.HealthCheckRequest{Service: "plugin"})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch %v %v", first, err)
	}
	f.drain()
	if update, err := watch.Recv(); err != nil || update.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("watch after drain %v %v", update, err)
	}
	check, err := client.Check(ctxFor(t), &healthpb.HealthCheckRequest{Service: "plugin"})
	if err != nil || check.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("check while draining %v %v", check, err)
	}
	if _, err := query(ctxFor(t), conn, "during drain"); err != nil {
		t.Errorf("calls must still be served while draining: %v", err)
	}
	stopped := make(chan struct{})
	go func() {
		f.stop(5 * time.Second)
		close(stopped)
	}()
	select {
	case <-stopped: // the open Watch did not hold the graceful stop up
	case <-time.After(4 * time.Second):
		t.Fatal("stop waited for the health watch")
	}
	if _, err := watch.Recv(); err == nil {
		t.Error("the watch stream outlived the front")
	}
}

func TestClassify(t *testing.T) {
	for method, want := range map[string]callKind{
		"/pluginv2.Data/QueryData":               kindPlugin,
		"/pluginv2.Future/NewMethod":             kindPlugin,
		"/grpc.health.v1.Health/Check":           kindHealthCheck,
		"/grpc.health.v1.Health/Watch":           kindHealthWatch,
		"/grpc.health.v1.Health/List":            kindHealthOther,
		"/plugin.GRPCController/Shutdown":        kindRefused,
		"/pluginv2/QueryData":                    kindRefused,
		"pluginv2.Data/QueryData":                kindRefused,
		"/pluginv2.Data/QueryData/":              kindRefused,
		"/pluginv2.Data/Query Data":              kindRefused,
		"/pluginv2.Data/":                        kindRefused,
		"/pluginv2.Data/Query/Data":              kindRefused,
		"/pluginv2..Data/X":                      kindPlugin, // harmless: no such service
		"/grpc.health.v1.HealthX/Check":          kindRefused,
		"/pluginv2.Data/../../plugin.X/Shutdown": kindRefused,
	} {
		if got := classify(method).kind; got != want {
			t.Errorf("classify(%q) = %v, want %v", method, got, want)
		}
	}
	if got := methodNames[classify("/pluginv2.Future/NewMethod").method]; got != "other" {
		t.Errorf("unknown pluginv2 methods count as %q", got)
	}
}

func TestFlags(t *testing.T) {
	var stderr bytes.Buffer
	for _, args := range [][]string{
		{},
		{"--plugin", "udp:x"},
		{"--plugin", "unix:/x", "--peers", "a:1"},
		{"--plugin", "unix:/x", "--self-ip", "nope"},
		{"--plugin", "unix:/x", "extra"},
	} {
		if code := run(args, io.Discard, &stderr); code != 2 && code != 1 {
			t.Errorf("%v: exit %d", args, code)
		}
	}
	if _, _, err := pluginAddress("tcp:127.0.0.1:1234"); err != nil {
		t.Error(err)
	}
	if _, _, err := pluginAddress("udp:x"); err == nil {
		t.Error("udp accepted")
	}
}

// A frame the filter drops (here the caller's reset of a stream answered by the filter)
// must not strand the frames read before it: they are flushed with the batch. go-plugin's
// client sends exactly this mix right after connecting, and its first call then waited for
// its deadline whenever the frames arrived in one read.
func TestADroppedFrameDoesNotHoldBackTheBatch(t *testing.T) {
	plugin := startFakePlugin(t, "a")
	f := startFront(t, config{plugin: "unix:" + plugin.address, listen: "127.0.0.1:0"})
	conn, err := net.Dial("tcp", f.addresses()["local"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// First the connection's setup, both ways, so that nothing of the plugin's is left to
	// come and flush the filter's writer by chance.
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second)) // bounded waits, not timings
	in := http2.NewFramer(conn, conn)
	in.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := in.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for acked, theirs := false, false; !acked || !theirs; {
		frame, err := in.ReadFrame()
		if err != nil {
			t.Fatalf("connection setup: %v", err)
		}
		if s, ok := frame.(*http2.SettingsFrame); ok {
			if s.IsAck() {
				acked = true
			} else {
				theirs = true
				_ = in.WriteSettingsAck()
			}
		}
	}

	var batch bytes.Buffer
	out := http2.NewFramer(&batch, nil)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	headers := func(id uint32, path string) {
		block.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"},
			{":path", path}, {":authority", "plugin"}, {"content-type", "application/grpc"},
			{"te", "trailers"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		_ = out.WriteHeaders(http2.HeadersFrameParam{StreamID: id,
			BlockFragment: block.Bytes(), EndHeaders: true})
	}
	headers(1, "/pluginv2.Data/QueryData")
	message, _ := proto.Marshal(wrapperspb.String("q"))
	_ = out.WriteData(1, true, grpcMessage(message))
	headers(3, "/plugin.GRPCStdio/StreamStdio") // refused by the filter
	_ = out.WriteRSTStream(3, http2.ErrCodeCancel)
	if _, err := conn.Write(batch.Bytes()); err != nil {
		t.Fatal(err)
	}

	// Without the flush the answer never comes, and the read runs into its deadline.
	for {
		frame, err := in.ReadFrame()
		if err != nil {
			t.Fatalf("no answer to the call sent before the dropped frame: %v", err)
		}
		if s, ok := frame.(*http2.SettingsFrame); ok && !s.IsAck() {
			_ = in.WriteSettingsAck()
		}
		meta, ok := frame.(*http2.MetaHeadersFrame)
		if !ok || meta.StreamID != 1 || !meta.StreamEnded() {
			continue
		}
		for _, field := range meta.Fields {
			if field.Name == "grpc-status" && field.Value != "0" {
				t.Fatalf("the call failed: %v", meta.Fields)
			}
		}
		if plugin.calls.Load() != 1 {
			t.Fatalf("the plugin served %d calls, want 1", plugin.calls.Load())
		}
		return
	}
}

// The filter holds back connection WINDOW_UPDATEs (heldCredit), but a sender always has at
// least three quarters of the window its receiver granted, and nothing granted is lost.
func TestHeldCreditKeepsMostOfTheWindow(t *testing.T) {
	h := heldCredit{window: defaultWindow}
	due := int64(defaultWindow) // the sender's window had every update passed on at once
	check := func(step string) {
		t.Helper()
		if h.window+h.held != due {
			t.Fatalf("%s: window %d + held %d, want %d", step, h.window, h.held, due)
		}
		if 4*h.window < 3*due {
			t.Fatalf("%s: the sender has %d of %d", step, h.window, due)
		}
	}
	passedOn := 0
	for i := range 1000 {
		size := uint32(700 + i%300) // a call's message, then the receiver's update for it
		due -= int64(size)
		if h.sent(size) > 0 {
			passedOn++
		}
		check("sent")
		due += int64(size)
		if h.granted(size) > 0 {
			passedOn++
		}
		check("granted")
	}
	if passedOn == 0 || passedOn > 100 {
		t.Errorf("%d updates passed on for 1000 messages, want a few", passedOn)
	}
	// A sender that uses up its window gets what is held at once.
	used := h.window
	due -= used
	if n := h.sent(uint32(used)); int64(n) != due {
		t.Errorf("passed on %d to a sender without window, want %d", n, due)
	}
	// A large update (a receiver growing its window) passes on at once.
	if n := h.granted(1 << 20); n != 1<<20 {
		t.Errorf("a 1 MiB update passed on as %d", n)
	}
	// The caller's update for DATA the filter sent it itself is not the plugin's.
	c := &filterConn{pluginCredit: heldCredit{window: defaultWindow}}
	c.ownDataLocked(7)
	if n := c.grant(&c.pluginCredit, 7); n != 0 || c.pluginCredit.held != 0 ||
		c.pluginCredit.window != defaultWindow {
		t.Errorf("after the filter's own 7 bytes: passed on %d, %+v", n, c.pluginCredit)
	}
}

// Both ports read and write their sockets with raw system calls (rawio_linux.go): data,
// the end of the stream and a closed connection come out as through net.Conn.
func TestRawIOReadsAndWritesSockets(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	var open atomic.Int64
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := countingListener{listener, &open}.Accept()
		if err == nil {
			accepted <- conn
		}
	}()
	client, err := net.Dial("tcp", listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	serverIO, clientIO := rawIO(server), rawIO(client)
	if _, plain := serverIO.(net.Conn); plain && runtime.GOOS == "linux" {
		t.Fatalf("rawIO of an accepted connection is the connection itself (%T)", serverIO)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // beyond the socket's buffers
	go func() {
		if _, err := clientIO.Write(big); err != nil {
			t.Error(err)
		}
		_ = client.Close()
	}()
	got, err := io.ReadAll(serverIO)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(big))
	}
	_ = server.Close()
	if _, err := serverIO.Read(make([]byte, 1)); err == nil {
		t.Error("a read on a closed connection did not fail")
	}
	if _, err := serverIO.Write([]byte("x")); err == nil {
		t.Error("a write on a closed connection did not fail")
	}
}
