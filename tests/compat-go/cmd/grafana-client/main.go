// Command grafana-client plays Grafana's side of the backend plugin protocol. It launches a
// plugin executable through hashicorp/go-plugin with Grafana's handshake and environment (or
// dials a plugin gRPC address someone else exposes), makes the calls a plan lists with the
// SDK's own pluginv2 clients and conversions, decodes frames with the SDK's data package,
// stops the plugin with go-plugin's Kill as Grafana does, and prints a JSON summary on stdout.
//
//	grafana-client --plugin dist/gpx_sample_go_linux_amd64 --plan plan.json
//	grafana-client --addr 127.0.0.1:10001 --plan - < plan.json
//	grafana-client --plugin ... --plugin-setting grpc_address_my_ds=10.0.0.7:10000 \
//	    --grafana-version 12.4.0 --duration 60s --interval 500ms --plan plan.json
//
// The plugin's environment follows Grafana (see env.go): GF_VERSION, one GF_PLUGIN_<KEY> per
// --plugin-setting (a [plugin.<id>] ini key), --env extras, and Grafana's own environment
// only when Grafana would forward it: by default for --grafana-version below 12.4, or when
// the plan's pluginId is in --forward-host-env-vars ([plugins] forward_host_env_vars);
// --forward-host-env=true|false decides explicitly.
//
// With --duration the calls repeat every --interval and the summary carries per-call counts
// (see repeat.go).
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
	// Plugin is the launched process's state after the calls, before Kill.
	Plugin *processReport `json:"plugin,omitempty"`
	// Launched describes the launched process and the address go-plugin dialled.
	Launched *launchReport `json:"launched,omitempty"`
	// Kill is how the process ended once Kill returned.
	Kill    *killReport   `json:"kill,omitempty"`
	Repeat  *RepeatReport `json:"repeat,omitempty"`
	Results []Result      `json:"results"`
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

type options struct {
	pluginPath, addr, planPath, version, logLevel string
	waitExit                                      time.Duration
	env                                           []string
	settings                                      []setting
	forwardList                                   []string
	forward                                       *bool
	duration, interval, callTimeout               time.Duration
	peers                                         bool
}

func main() {
	var (
		o           options
		env         envFlags
		settings    settingFlags
		forwardList string
		forward     bool
	)
	flag.StringVar(&o.pluginPath, "plugin", "", "plugin executable to launch the way Grafana does")
	flag.StringVar(&o.addr, "addr", "", "gRPC address of an already running plugin (instead of --plugin)")
	flag.StringVar(&o.planPath, "plan", "-", "JSON plan file (pluginId, datasource settings, calls); - reads stdin")
	flag.StringVar(&o.version, "grafana-version", "12.0.0", "Grafana version: GF_VERSION, and whether the host environment is forwarded by default (below 12.4)")
	flag.StringVar(&o.logLevel, "log-level", "info", "level for go-plugin's log of the plugin's stderr (stderr)")
	flag.DurationVar(&o.waitExit, "wait-exit", 2*time.Second, "after the calls, how long to wait for a plugin that is exiting by itself")
	flag.Var(&env, "env", "extra KEY=VALUE for a launched plugin's environment (repeatable)")
	flag.Var(&settings, "plugin-setting", "KEY=VALUE of the plugin's [plugin.<id>] ini section; the plugin gets GF_PLUGIN_<UPPER(KEY)> (repeatable)")
	flag.StringVar(&forwardList, "forward-host-env-vars", "", "plugin ids whose host environment Grafana forwards ([plugins] forward_host_env_vars)")
	flag.BoolVar(&forward, "forward-host-env", false, "forward this process's environment to the plugin (true) or not (false), whatever the version says")
	flag.DurationVar(&o.duration, "duration", 0, "repeat the plan's calls for this long (at most 2h); 0 runs them once")
	flag.DurationVar(&o.interval, "interval", time.Second, "with --duration: time between the starts of two rounds")
	flag.DurationVar(&o.callTimeout, "call-timeout", defaultCallTimeout, "with --duration: deadline of a call whose plan entry has no timeoutMs")
	flag.BoolVar(&o.peers, "peers", false, "report in each result the address that answered")
	flag.Parse()
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "forward-host-env" {
			o.forward = &forward
		}
	})
	o.env, o.settings, o.forwardList = env, settings, splitList(forwardList)
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "grafana-client:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "grafana-client:", err)
		os.Exit(1)
	}
}

func (o *options) check() error {
	if (o.pluginPath == "") == (o.addr == "") {
		return fmt.Errorf("give exactly one of --plugin PATH or --addr HOST:PORT")
	}
	if _, err := versionAtLeast(o.version, 0, 0); err != nil {
		return err
	}
	if o.duration < 0 || o.duration > maxRepeatDuration {
		return fmt.Errorf("--duration %s: use 0 (run once) up to %s", o.duration, maxRepeatDuration)
	}
	if o.duration > 0 && o.interval < minRepeatInterval {
		return fmt.Errorf("--interval %s: use at least %s", o.interval, minRepeatInterval)
	}
	if o.callTimeout <= 0 {
		return fmt.Errorf("--call-timeout must be positive")
	}
	return nil
}

func run(o options) error {
	plan, err := loadPlan(o.planPath)
	if err != nil {
		return err
	}
	var conn *connection
	if o.pluginPath != "" {
		skip, err := skipsHostEnv(o.version, plan.PluginID, o.forwardList, o.forward)
		if err != nil {
			return err
		}
		logger := hclog.New(&hclog.LoggerOptions{Name: "grafana-client", Output: os.Stderr, Level: hclog.LevelFromString(o.logLevel)})
		env := grafanaPluginEnv(o.version, o.settings, o.env, skip, lookupHostEnv)
		conn, err = launch(o.pluginPath, env, skip, logger)
		if err != nil {
			return err
		}
	} else if conn, err = dial(o.addr); err != nil {
		return err
	}
	s := &session{connection: conn, plan: plan}
	summary := Summary{Results: []Result{}}
	ctx := context.Background()
	if o.duration > 0 {
		summary.Repeat, summary.Results = s.repeat(ctx, o.duration, o.interval, o.callTimeout)
	} else {
		for _, c := range plan.Calls {
			summary.Results = append(summary.Results, s.run(ctx, c))
		}
	}
	if !o.peers {
		for i := range summary.Results {
			summary.Results[i].Peer = ""
		}
	}
	summary.Launched = conn.describe()
	summary.Plugin, summary.Kill = conn.close(exitWait(summary.Results, o.waitExit))
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
