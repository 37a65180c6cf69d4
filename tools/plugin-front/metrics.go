package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"

	"google.golang.org/grpc/codes"
)

// Prometheus text exposition of the front's counters, written by hand: a few atomics per
// call are all the accounting the hot path does.

const numCodes = 17 // codes.OK .. codes.Unauthenticated

// portMetrics are the counters of one listening port ("local" or "attach").
type portMetrics struct {
	name        string
	calls       []atomic.Uint64 // [method][code]
	refused     []atomic.Uint64 // [service]
	openStreams atomic.Int64
}

func newPortMetrics(name string) *portMetrics {
	return &portMetrics{
		name:    name,
		calls:   make([]atomic.Uint64, len(methodNames)*numCodes),
		refused: make([]atomic.Uint64, len(refusedNames)),
	}
}

func (p *portMetrics) called(method int, code codes.Code) {
	c := int(code)
	if c < 0 || c >= numCodes {
		c = int(codes.Unknown)
	}
	p.calls[method*numCodes+c].Add(1)
}

type metrics struct {
	local, attach          *portMetrics
	toPlugin, fromPlugin   atomic.Uint64 // message bytes
	connections            atomic.Int64  // callers' connections open on our ports
	peersKnown, peersReady atomic.Int64
	balancedLocal          atomic.Uint64
	balancedPeer           atomic.Uint64
	draining               atomic.Bool
	attachEnabled          bool // set before serving
}

func newMetrics() *metrics {
	return &metrics{local: newPortMetrics("local"), attach: newPortMetrics("attach")}
}

func (m *metrics) ports() []*portMetrics {
	if m.attachEnabled {
		return []*portMetrics{m.local, m.attach}
	}
	return []*portMetrics{m.local}
}

func (m *metrics) write(w io.Writer) error {
	b := bufio.NewWriter(w)
	family := func(name, kind, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
	}
	family("plugin_operator_front_calls_total", "counter",
		"Calls the front forwarded, by port (local: this pod's plugin; attach: balanced over "+
			"the Plugin's ready replicas), method (pluginv2 and health methods; \"other\" for the "+
			"rest) and gRPC status code")
	for _, port := range m.ports() {
		for i := range port.calls {
			if n := port.calls[i].Load(); n > 0 {
				fmt.Fprintf(b, "plugin_operator_front_calls_total{port=%q,method=%q,code=%q} %d\n",
					port.name, methodNames[i/numCodes], codes.Code(i%numCodes).String(), n)
			}
		}
	}
	family("plugin_operator_front_refused_calls_total", "counter",
		"Calls refused with UNIMPLEMENTED because only pluginv2.* and grpc.health.v1.Health "+
			"are served, by port and service (go-plugin's controller, stdio, broker, reflection, "+
			"\"other\")")
	for _, port := range m.ports() {
		for i := range port.refused {
			if n := port.refused[i].Load(); n > 0 {
				fmt.Fprintf(b, "plugin_operator_front_refused_calls_total{port=%q,service=%q} %d\n",
					port.name, refusedNames[i], n)
			}
		}
	}
	family("plugin_operator_front_open_streams", "gauge", "Calls in progress, by port")
	for _, port := range m.ports() {
		fmt.Fprintf(b, "plugin_operator_front_open_streams{port=%q} %d\n", port.name,
			port.openStreams.Load())
	}
	if m.attachEnabled {
		m.writeAttach(b, family)
	}
	family("plugin_operator_front_draining", "gauge",
		"1 once the front was asked to stop: health checks answer NOT_SERVING")
	draining := 0
	if m.draining.Load() {
		draining = 1
	}
	fmt.Fprintf(b, "plugin_operator_front_draining %d\n", draining)
	// The two series below kept their names from the host's byte forwarder, which the front
	// replaced, so dashboards and alerts keep working.
	family("plugin_operator_host_forwarded_bytes_total", "counter",
		"gRPC message bytes passed between callers and plugins, by direction "+
			"(to_plugin, from_plugin)")
	fmt.Fprintf(b, "plugin_operator_host_forwarded_bytes_total{direction=\"to_plugin\"} %d\n",
		m.toPlugin.Load())
	fmt.Fprintf(b, "plugin_operator_host_forwarded_bytes_total{direction=\"from_plugin\"} %d\n",
		m.fromPlugin.Load())
	family("plugin_operator_host_open_connections", "gauge",
		"Callers' connections open on the front's ports now")
	fmt.Fprintf(b, "plugin_operator_host_open_connections %d\n", m.connections.Load())
	return b.Flush()
}

func (m *metrics) writeAttach(b *bufio.Writer, family func(name, kind, help string)) {
	family("plugin_operator_front_balanced_calls_total", "counter",
		"Calls on the attach port by where they went: this pod's plugin or a peer replica")
	fmt.Fprintf(b, "plugin_operator_front_balanced_calls_total{to=\"local\"} %d\n",
		m.balancedLocal.Load())
	fmt.Fprintf(b, "plugin_operator_front_balanced_calls_total{to=\"peer\"} %d\n",
		m.balancedPeer.Load())
	family("plugin_operator_front_peers", "gauge",
		"Replicas the attach port balances over (this pod's plugin included): known from DNS, "+
			"and ready (connected)")
	fmt.Fprintf(b, "plugin_operator_front_peers{state=\"known\"} %d\n", m.peersKnown.Load())
	fmt.Fprintf(b, "plugin_operator_front_peers{state=\"ready\"} %d\n", m.peersReady.Load())
}

func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = m.write(w)
	})
	return mux
}
