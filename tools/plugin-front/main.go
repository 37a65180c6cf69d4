// plugin-front serves a Grafana backend plugin's gRPC to the rest of the cluster, in front
// of the plugin's own go-plugin socket, inside the plugin's pod. `plugin-operator host`
// starts it once the plugin printed its handshake line.
//
//	plugin-front --plugin unix:/tmp/plugin123 --listen 0.0.0.0:10000 \
//	  [--attach-listen 0.0.0.0:11000 --peers plugin-x-peers.ns.svc:10000 --self-ip 10.0.0.5] \
//	  [--metrics-listen 127.0.0.1:0] [--drain-delay 2s] [--stop-timeout 5s]
//
// Every port serves only pluginv2.* calls and grpc.health.v1.Health; go-plugin's own
// services (Shutdown, stdio, broker) and reflection are refused with UNIMPLEMENTED (see
// methods.go). Messages pass through as they are, never decoded; metadata, trailers,
// status codes and deadlines unchanged.
//
//   - --listen (the local port): calls go to this pod's plugin (h2filter.go: HTTP/2 frames
//     pass through, header blocks are checked and encoded again).
//   - --attach-listen (optional): each call goes to the next ready replica of the Plugin,
//     round robin per call, so one caller's single HTTP/2 connection reaches them all
//     (router.go). The replicas come from looking up --peers (a headless Service listing
//     the ready pods) every --peer-interval; this pod's own address (--self-ip) is left
//     out, its local plugin reached directly, one hop shorter. Peers are dialled on their
//     local port.
//
// Once listening, it prints one JSON line on stdout with the bound addresses, e.g.
// {"local":"0.0.0.0:10000","attach":"0.0.0.0:11000","metrics":"127.0.0.1:40123"}; metrics
// are Prometheus text at http://<metrics>/metrics. Logs go to stderr as hclog-style JSON.
//
// SIGTERM or SIGINT: health checks answer NOT_SERVING at once while calls are still served
// for --drain-delay (the kubelet's readiness probe fails and the Service endpoints catch
// up), then GOAWAY and up to --stop-timeout for calls in progress, then exit 0. A second
// signal skips the rest of the delay. With --stop-on-stdin-close, the end of stdin (the
// parent gone) stops it at once. Exit codes: 0 stopped, 1 failed, 2 usage.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (config, string, bool, error) {
	var cfg config
	var peers, selfIP, logLevel string
	var stdinStop bool
	flags := flag.NewFlagSet("plugin-front", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.StringVar(&cfg.plugin, "plugin", "", "the plugin's address: unix:/path or tcp:host:port")
	flags.StringVar(&cfg.listen, "listen", "0.0.0.0:10000", "the local port (this pod's plugin)")
	flags.StringVar(&cfg.attachListen, "attach-listen", "", "the attach port, balanced over the replicas (optional)")
	flags.StringVar(&peers, "peers", "", "comma-separated host:port entries whose addresses are the replicas (with --attach-listen)")
	flags.StringVar(&selfIP, "self-ip", "", "this pod's IP: replaced by the local plugin among the peers")
	flags.StringVar(&cfg.metricsListen, "metrics-listen", "127.0.0.1:0", "address for /metrics (Prometheus text)")
	flags.DurationVar(&cfg.drainDelay, "drain-delay", 2*time.Second, "keep serving this long after SIGTERM, health NOT_SERVING")
	flags.DurationVar(&cfg.stopTimeout, "stop-timeout", 5*time.Second, "then let calls in progress finish for at most this long")
	flags.DurationVar(&cfg.peerInterval, "peer-interval", time.Second, "how often --peers is looked up")
	flags.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	flags.BoolVar(&stdinStop, "stop-on-stdin-close", false, "stop at once when stdin ends (the parent died)")
	if err := flags.Parse(args); err != nil {
		return cfg, "", false, err
	}
	if flags.NArg() > 0 {
		return cfg, "", false, fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	if cfg.plugin == "" {
		return cfg, "", false, errors.New("--plugin is required")
	}
	for _, entry := range strings.Split(peers, ",") {
		if entry = strings.TrimSpace(entry); entry != "" {
			cfg.peers = append(cfg.peers, entry)
		}
	}
	if len(cfg.peers) > 0 && cfg.attachListen == "" {
		return cfg, "", false, errors.New("--peers needs --attach-listen")
	}
	if selfIP != "" {
		if cfg.selfIP = net.ParseIP(selfIP); cfg.selfIP == nil {
			return cfg, "", false, fmt.Errorf("--self-ip %q is not an IP address", selfIP)
		}
	}
	if cfg.drainDelay < 0 || cfg.stopTimeout < 0 || cfg.peerInterval <= 0 {
		return cfg, "", false, errors.New("--drain-delay and --stop-timeout must not be negative, --peer-interval must be positive")
	}
	return cfg, logLevel, stdinStop, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, logLevel, stdinStop, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "plugin-front: %v\n", err)
		}
		return 2
	}
	log := newLogger(stderr, logLevel)
	f, err := newFront(cfg, log)
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return 1
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	f.serve()
	line, _ := json.Marshal(f.addresses())
	fmt.Fprintf(stdout, "%s\n", line)
	log.Info("serving", "plugin", cfg.plugin, "addresses", string(line))
	parentGone := make(chan struct{})
	if stdinStop {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(parentGone)
		}()
	}
	select {
	case err := <-f.serveErrors:
		log.Error("serving failed", "error", err.Error())
		f.stop(0)
		return 1
	case <-parentGone:
		log.Warn("stdin closed: the parent is gone; stopping now")
		f.stop(0)
		return 0
	case sig := <-signals:
		log.Info("draining: health checks say NOT_SERVING, calls are still served",
			"signal", sig.String(), "drain_delay", cfg.drainDelay.String())
	}
	f.drain()
	select {
	case <-time.After(cfg.drainDelay):
	case <-signals:
		log.Info("second signal: not waiting for the rest of the drain delay")
	case <-parentGone:
	}
	log.Info("stopping: GOAWAY, calls in progress may finish", "timeout", cfg.stopTimeout.String())
	f.stop(cfg.stopTimeout)
	log.Info("stopped")
	return 0
}

// newLogger writes JSON lines in hclog's shape (@level, @message, @timestamp, @module),
// which the host re-logs with the plugin's own lines.
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	handler := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
			case slog.LevelKey:
				a.Key = "@level"
				a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		}})
	return slog.New(handler).With("@module", "plugin-front")
}
