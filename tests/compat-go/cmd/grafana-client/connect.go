package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The handshake Grafana uses for every backend plugin (protocol.md §1.1).
var handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  2,
	MagicCookieKey:   "grafana_plugin_type",
	MagicCookieValue: "datasource",
}

// pluginSet names the pluginv2 services the way Grafana's client does; the names only
// matter to go-plugin's Dispense, never on the wire.
func pluginSet() goplugin.PluginSet {
	return goplugin.PluginSet{
		"diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{},
		"resource":    &grpcplugin.ResourceGRPCPlugin{},
		"data":        &grpcplugin.DataGRPCPlugin{},
		"stream":      &grpcplugin.StreamGRPCPlugin{},
	}
}

// clients are the pluginv2 clients Grafana calls.
type clients struct {
	diagnostics grpcplugin.DiagnosticsClient
	resource    grpcplugin.ResourceClient
	data        grpcplugin.DataClient
	stream      grpcplugin.StreamClient
}

// connection is a plugin reached either by launching it or by dialling an address.
type connection struct {
	clients
	launched         *goplugin.Client
	cmd              *exec.Cmd
	conn             *grpc.ClientConn
	hostEnvForwarded bool
}

// launch starts the executable through go-plugin exactly as Grafana's plugin manager does:
// env is Grafana's list for the plugin, and go-plugin adds the host environment unless
// skipHostEnv, then its handshake variables.
func launch(path string, env []string, skipHostEnv bool, logger hclog.Logger) (*connection, error) {
	cmd := exec.Command(path)
	cmd.Env = env
	client := goplugin.NewClient(&goplugin.ClientConfig{
		Cmd:              cmd,
		HandshakeConfig:  handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{2: pluginSet()},
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		SkipHostEnv:      skipHostEnv,
		Logger:           logger,
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("starting plugin %s: %w", path, err)
	}
	if v := client.NegotiatedVersion(); v < 2 {
		client.Kill()
		return nil, fmt.Errorf("plugin protocol version not supported: plugin negotiated %d, need 2", v)
	}
	c := &connection{launched: client, cmd: cmd, hostEnvForwarded: !skipHostEnv}
	for name, target := range map[string]any{
		"diagnostics": &c.diagnostics, "resource": &c.resource, "data": &c.data, "stream": &c.stream,
	} {
		raw, err := rpc.Dispense(name)
		if err != nil {
			client.Kill()
			return nil, fmt.Errorf("dispensing %s: %w", name, err)
		}
		if err := assign(target, raw); err != nil {
			client.Kill()
			return nil, err
		}
	}
	return c, nil
}

func assign(target, raw any) error {
	var ok bool
	switch t := target.(type) {
	case *grpcplugin.DiagnosticsClient:
		*t, ok = raw.(grpcplugin.DiagnosticsClient)
	case *grpcplugin.ResourceClient:
		*t, ok = raw.(grpcplugin.ResourceClient)
	case *grpcplugin.DataClient:
		*t, ok = raw.(grpcplugin.DataClient)
	case *grpcplugin.StreamClient:
		*t, ok = raw.(grpcplugin.StreamClient)
	}
	if !ok {
		return fmt.Errorf("go-plugin dispensed %T, which is not the expected client", raw)
	}
	return nil
}

// dial connects to a plugin's gRPC server that something else runs (e.g. plugin-operator host).
func dial(addr string) (*connection, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)),
	)
	if err != nil {
		return nil, fmt.Errorf("dialling %s: %w", addr, err)
	}
	c := &connection{conn: conn}
	ctx := context.Background()
	for name, p := range pluginSet() {
		raw, err := p.(goplugin.GRPCPlugin).GRPCClient(ctx, nil, conn)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("building the %s client: %w", name, err)
		}
		target := map[string]any{
			"diagnostics": &c.diagnostics, "resource": &c.resource, "data": &c.data, "stream": &c.stream,
		}[name]
		if err := assign(target, raw); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return c, nil
}

// processReport says whether a launched plugin is still running and how it ended, before
// the client's Kill.
type processReport struct {
	Exited   bool `json:"exited"`
	ExitCode *int `json:"exitCode"`
}

// launchReport describes the launched process and what go-plugin connected to.
type launchReport struct {
	PID              int    `json:"pid"`
	Network          string `json:"network"`
	Address          string `json:"address"`
	HostEnvForwarded bool   `json:"hostEnvForwarded"`
	// EnvNames are the variable names the process was started with (values are not shown).
	EnvNames []string `json:"envNames"`
	// OpenSockets counts the process's socket descriptors after the calls (Linux /proc): a
	// locator has none, a plugin serving itself has its listener and connections.
	OpenSockets *int `json:"openSockets"`
}

// killReport is how the process ended after Kill, as Grafana stops a plugin.
type killReport struct {
	Exited     bool   `json:"exited"`
	ExitCode   *int   `json:"exitCode"`
	Signal     string `json:"signal,omitempty"`
	DurationMs int64  `json:"durationMs"`
}

// describe reports the launched process (nil when the client dialled an address).
func (c *connection) describe() *launchReport {
	if c.launched == nil || c.cmd.Process == nil {
		return nil
	}
	r := &launchReport{PID: c.cmd.Process.Pid, HostEnvForwarded: c.hostEnvForwarded,
		EnvNames: envNames(c.cmd.Env)}
	if rc := c.launched.ReattachConfig(); rc != nil && rc.Addr != nil {
		r.Network, r.Address = rc.Addr.Network(), rc.Addr.String()
	}
	if n, err := countSockets(r.PID); err == nil {
		r.OpenSockets = &n
	}
	return r
}

// countSockets counts the socket file descriptors of a process.
func countSockets(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil &&
			strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n, nil
}

// close stops the plugin the way Grafana does (Kill: Shutdown RPC, close, 2 s grace,
// SIGKILL) and reports its state before and after. waitExit gives a plugin that is already
// dying time to be reaped first.
func (c *connection) close(waitExit time.Duration) (*processReport, *killReport) {
	if c.launched == nil {
		c.conn.Close()
		return nil, nil
	}
	deadline := time.Now().Add(waitExit)
	for !c.launched.Exited() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	before := &processReport{Exited: c.launched.Exited()}
	if before.Exited && c.cmd.ProcessState != nil {
		code := c.cmd.ProcessState.ExitCode()
		before.ExitCode = &code
	}
	started := time.Now()
	c.launched.Kill()
	after := &killReport{Exited: c.launched.Exited(), DurationMs: time.Since(started).Milliseconds()}
	if state := c.cmd.ProcessState; state != nil {
		after.Exited = true
		if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			after.Signal = ws.Signal().String()
		} else {
			code := state.ExitCode()
			after.ExitCode = &code
		}
	}
	return before, after
}
