package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type config struct {
	plugin        string   // the plugin's go-plugin address: unix:/path or tcp:host:port
	listen        string   // the local port: this pod's plugin only
	attachListen  string   // the attach port (optional): balanced over the replicas
	peers         []string // host:port entries, looked up for the attach port's replicas
	selfIP        net.IP   // this pod's address among the peers
	metricsListen string
	drainDelay    time.Duration
	stopTimeout   time.Duration
	peerInterval  time.Duration
}

// pluginAddress splits --plugin into a dial network and address.
func pluginAddress(text string) (network, address string, err error) {
	network, address, found := strings.Cut(text, ":")
	if !found || address == "" || (network != "unix" && network != "tcp") {
		return "", "", fmt.Errorf("--plugin %q: use unix:/path/to/socket or tcp:host:port "+
			"(the network and address of the plugin's go-plugin handshake line)", text)
	}
	if network == "tcp" {
		if _, _, err := net.SplitHostPort(address); err != nil {
			return "", "", fmt.Errorf("--plugin %q: %v", text, err)
		}
	}
	return network, address, nil
}

type front struct {
	cfg     config
	log     *slog.Logger
	metrics *metrics

	pluginNetwork, pluginAddr string
	filter                    *filterServer // the local port
	router                    *router       // the attach port (nil without one)
	peers                     *peerSet
	metricsListener           net.Listener
	metricsServer             *http.Server

	draining    atomic.Bool
	drainOnce   sync.Once
	stopOnce    sync.Once
	lastRefusal atomic.Int64
	cancelPeers context.CancelFunc
	serveErrors chan error
}

// newFront binds every port, so that their addresses are known before serving starts; the
// attach port's connections to the replicas are dialled in the background.
func newFront(cfg config, log *slog.Logger) (*front, error) {
	network, address, err := pluginAddress(cfg.plugin)
	if err != nil {
		return nil, err
	}
	f := &front{cfg: cfg, log: log, metrics: newMetrics(), pluginNetwork: network,
		pluginAddr: address, serveErrors: make(chan error, 3)}
	ok := false
	var listeners []net.Listener
	defer func() {
		if !ok {
			for _, l := range listeners {
				_ = l.Close()
			}
		}
	}()
	local, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return nil, fmt.Errorf("local port %s: %w", cfg.listen, err)
	}
	listeners = append(listeners, local)
	f.filter = newFilterServer(f, countingListener{local, &f.metrics.connections})
	var attach net.Listener
	if cfg.attachListen != "" {
		for _, entry := range cfg.peers {
			if _, _, err := net.SplitHostPort(entry); err != nil {
				return nil, fmt.Errorf("--peers entry %q: want host:port: %v", entry, err)
			}
		}
		if attach, err = net.Listen("tcp", cfg.attachListen); err != nil {
			return nil, fmt.Errorf("attach port %s: %w", cfg.attachListen, err)
		}
		listeners = append(listeners, attach)
	}
	if f.metricsListener, err = net.Listen("tcp", cfg.metricsListen); err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", cfg.metricsListen, err)
	}
	f.metricsServer = &http.Server{Handler: f.metrics.handler(),
		ReadHeaderTimeout: 5 * time.Second}
	if attach != nil {
		f.metrics.attachEnabled = true
		localAddress := address
		if network == "unix" {
			localAddress = "unix:" + address
		}
		f.router = newRouter(f, countingListener{attach, &f.metrics.connections}, localAddress)
		f.peers = newPeerSet(cfg.peers, cfg.selfIP, cfg.peerInterval, f.router.setPeers, log)
	}
	ok = true
	return f, nil
}

func (f *front) dialPlugin(ctx context.Context, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, f.pluginNetwork, f.pluginAddr)
}

// dialPeer dials a replica: the local plugin's socket, or a peer's local port.
func (f *front) dialPeer(ctx context.Context, address string) (net.Conn, error) {
	if path, ok := strings.CutPrefix(address, "unix:"); ok {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
	// TCP keepalive finds a replica that vanished without closing its connections.
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true,
		Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3}}
	return d.DialContext(ctx, "tcp", address)
}

// addresses are the bound addresses, for the line the front prints when it starts.
func (f *front) addresses() map[string]string {
	out := map[string]string{"metrics": f.metricsListener.Addr().String(),
		"local": f.filter.listener.Addr().String()}
	if f.router != nil {
		out["attach"] = f.router.listener.Addr().String()
	}
	return out
}

// serve starts every port; errors arrive on serveErrors.
func (f *front) serve() {
	go func() {
		if err := f.filter.serve(); err != nil {
			f.serveErrors <- fmt.Errorf("local port: %w", err)
		}
	}()
	go func() {
		err := f.metricsServer.Serve(f.metricsListener)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.serveErrors <- fmt.Errorf("metrics: %w", err)
		}
	}()
	if f.router != nil {
		ctx, cancel := context.WithCancel(context.Background())
		f.cancelPeers = cancel
		f.peers.refresh(ctx) // the first peers before the first call
		go f.peers.run(ctx)
		go func() {
			if err := f.router.serve(); err != nil {
				f.serveErrors <- fmt.Errorf("attach port: %w", err)
			}
		}()
	}
}

func (f *front) isDraining() bool { return f.draining.Load() }

// drain makes health checks answer NOT_SERVING (the kubelet then takes the pod out of its
// Services' endpoints) while calls are still served; the attach port sends its calls to
// the other replicas when there are any.
func (f *front) drain() {
	f.drainOnce.Do(func() {
		f.draining.Store(true)
		f.metrics.draining.Store(true)
		f.filter.drain()
		if f.router != nil {
			f.router.drain()
		}
	})
}

// stop ends serving: GOAWAY to every caller, calls in progress may finish within timeout,
// then whatever is left is cut.
func (f *front) stop(timeout time.Duration) {
	f.drain()
	f.stopOnce.Do(func() {
		if f.cancelPeers != nil {
			f.cancelPeers()
		}
		var wg sync.WaitGroup
		wg.Go(func() { f.filter.stop(timeout) })
		if f.router != nil {
			wg.Go(func() { f.router.stop(timeout) })
		}
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = f.metricsServer.Shutdown(ctx)
	})
}

// logRefusal logs refused calls, at most one line a second (the metrics count them all).
func (f *front) logRefusal(portName, method string) {
	now := time.Now().UnixNano()
	last := f.lastRefusal.Load()
	if now-last < int64(time.Second) || !f.lastRefusal.CompareAndSwap(last, now) {
		return
	}
	f.log.Warn("refused a call to a service this port does not serve", "port", portName,
		"method", shorten(method))
}

// countingListener counts the connections open on it.
type countingListener struct {
	net.Listener
	open *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newCountedConn(conn, l.open), nil
}

type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func newCountedConn(conn net.Conn, open *atomic.Int64) *countedConn {
	open.Add(1)
	return &countedConn{Conn: conn, open: open}
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

func shorten(text string) string {
	const limit = 200
	if len(text) > limit {
		return text[:limit] + "..."
	}
	return text
}

// grpc.health.v1.HealthCheckResponse{status: NOT_SERVING}, encoded.
var notServing = []byte{0x08, 0x02}
