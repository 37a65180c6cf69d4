// Command grafana-client plays Grafana's side of the backend plugin protocol. It launches a
// plugin executable through hashicorp/go-plugin with Grafana's handshake (or dials a plugin
// gRPC address someone else exposes), makes the calls a plan lists with the SDK's own
// pluginv2 clients and conversions, decodes frames with the SDK's data package, and prints
// a JSON summary on stdout.
//
//	grafana-client --plugin dist/gpx_sample_go_linux_amd64 --plan plan.json
//	grafana-client --addr 127.0.0.1:10001 --plan - < plan.json
//
// Exit status: 0 when the session ran (failed calls are reported in the summary), 1 when it
// could not (bad plan, plugin did not start), 2 for bad flags.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Summary is the JSON document printed on stdout.
type Summary struct {
	Plugin  *processReport `json:"plugin,omitempty"`
	Results []Result       `json:"results"`
}

type envFlags []string

func (e *envFlags) String() string { return strings.Join(*e, ",") }
func (e *envFlags) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("--env wants KEY=VALUE, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

func main() {
	var (
		pluginPath = flag.String("plugin", "", "plugin executable to launch the way Grafana does")
		addr       = flag.String("addr", "", "gRPC address of an already running plugin (instead of --plugin)")
		planPath   = flag.String("plan", "-", "JSON plan file (pluginId, datasource settings, calls); - reads stdin")
		version    = flag.String("grafana-version", "12.0.0", "GF_VERSION given to a launched plugin")
		logLevel   = flag.String("log-level", "info", "level for go-plugin's log of the plugin's stderr (stderr)")
		waitExit   = flag.Duration("wait-exit", 2*time.Second, "after the calls, how long to wait for a plugin that is exiting by itself")
		env        envFlags
	)
	flag.Var(&env, "env", "extra KEY=VALUE for a launched plugin's environment (repeatable)")
	flag.Parse()
	if (*pluginPath == "") == (*addr == "") {
		fmt.Fprintln(os.Stderr, "grafana-client: give exactly one of --plugin PATH or --addr HOST:PORT")
		os.Exit(2)
	}
	if err := run(*pluginPath, *addr, *planPath, *version, *logLevel, *waitExit, env); err != nil {
		fmt.Fprintln(os.Stderr, "grafana-client:", err)
		os.Exit(1)
	}
}

func run(pluginPath, addr, planPath, version, logLevel string, waitExit time.Duration, env []string) error {
	plan, err := loadPlan(planPath)
	if err != nil {
		return err
	}
	var conn *connection
	if pluginPath != "" {
		logger := hclog.New(&hclog.LoggerOptions{Name: "grafana-client", Output: os.Stderr, Level: hclog.LevelFromString(logLevel)})
		conn, err = launch(pluginPath, childEnv(version, env), logger)
	} else {
		conn, err = dial(addr)
	}
	if err != nil {
		return err
	}
	s := &session{connection: conn, plan: plan}
	summary := Summary{Results: []Result{}}
	ctx := context.Background()
	for _, c := range plan.Calls {
		summary.Results = append(summary.Results, s.run(ctx, c))
	}
	summary.Plugin = conn.close(exitWait(summary.Results, waitExit))
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(summary)
}

// exitWait waits for the plugin only when a call suggests it went away.
func exitWait(results []Result, wait time.Duration) time.Duration {
	for _, r := range results {
		if r.Error != nil && r.Error.Code == "Unavailable" {
			return wait
		}
	}
	return 0
}

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }
