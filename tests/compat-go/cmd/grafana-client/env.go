package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// The environment of a plugin process, built by the rules of Grafana's sources (see
// docs/grafana-facts.md):
//
//   - Grafana's own list (pkg/services/pluginsintegration/pluginconfig/envvars.go): GF_VERSION
//     first, then one GF_PLUGIN_<UPPER(key)>=value per key of the [plugin.<id>] ini section
//     (keys "path" and "id" skipped; the key is upper-cased as it is, '-' stays '-'). When
//     Grafana's own environment has that GF_PLUGIN_<KEY> set to a non-empty value, that
//     value is used instead of the ini one.
//   - When the plugin skips the host environment, Grafana appends the few host variables it
//     permits (pkg/plugins/envvars/envvars.go) and go-plugin gets SkipHostEnv. Otherwise
//     go-plugin appends Grafana's whole os.Environ() after Grafana's list.
//   - go-plugin appends its handshake variables last (client.go).
//
// A plugin skips the host environment when the skip feature is on and its id is not in
// [plugins] forward_host_env_vars (pkg/plugins/manager/pipeline/bootstrap/steps.go). The
// feature was the pluginsSkipHostEnvVars toggle (off by default) until Grafana 12.4, where
// skipping became the default.

// permittedHostEnvVars are the host variables Grafana passes to a plugin that skips the
// host environment: proxy settings for net/http and, in the newest Grafana, the socket dir.
var permittedHostEnvVars = []string{
	"PLUGIN_UNIX_SOCKET_DIR",
	"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy",
}

// setting is one key of a [plugin.<id>] section, in the order given.
type setting struct{ key, value string }

type settingFlags []setting

func (s *settingFlags) String() string {
	parts := make([]string, len(*s))
	for i, kv := range *s {
		parts[i] = kv.key + "=" + kv.value
	}
	return strings.Join(parts, ",")
}

func (s *settingFlags) Set(v string) error {
	key, value, ok := strings.Cut(v, "=")
	if !ok || key == "" {
		return fmt.Errorf("--plugin-setting wants KEY=VALUE (a key of [plugin.<id>]), got %q", v)
	}
	*s = append(*s, setting{key, value})
	return nil
}

// grafanaPluginEnv is the list Grafana sets as the command's environment (before go-plugin
// adds the host environment and its handshake variables).
func grafanaPluginEnv(version string, settings []setting, extra []string, skipHostEnv bool,
	lookup func(string) (string, bool)) []string {
	env := []string{"GF_VERSION=" + version}
	for _, s := range settings {
		if s.key == "path" || strings.ToLower(s.key) == "id" {
			continue
		}
		name := "GF_PLUGIN_" + strings.ToUpper(s.key)
		value := s.value
		if own, ok := lookup(name); ok && own != "" {
			value = own
		}
		env = append(env, name+"="+value)
	}
	env = append(env, extra...)
	if skipHostEnv {
		for _, name := range permittedHostEnvVars {
			if value, ok := lookup(name); ok {
				env = append(env, name+"="+value)
			}
		}
	}
	return env
}

// splitList reads a list setting the way Grafana's util.SplitString does: a JSON array, or
// items separated by commas and/or white space.
func splitList(text string) []string {
	trimmed := strings.TrimSpace(text)
	if strings.HasPrefix(trimmed, "[") {
		var items []string
		if err := json.Unmarshal([]byte(trimmed), &items); err == nil {
			return items
		}
		return []string{}
	}
	return strings.Fields(strings.ReplaceAll(text, ",", " "))
}

// skipsHostEnv decides SkipHostEnv for a plugin. forward, when not nil, is the explicit
// --forward-host-env choice and wins.
func skipsHostEnv(version, pluginID string, forwardList []string, forward *bool) (bool, error) {
	if forward != nil {
		return !*forward, nil
	}
	newer, err := versionAtLeast(version, 12, 4)
	if err != nil {
		return false, err
	}
	for _, id := range forwardList {
		if id == pluginID {
			return false, nil
		}
	}
	return newer, nil
}

// versionAtLeast compares the major.minor of a Grafana version such as 12.4.0 or
// 13.0.0-12345 with major.minor.
func versionAtLeast(version string, major, minor int) (bool, error) {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return false, fmt.Errorf("--grafana-version %q: want MAJOR.MINOR[.PATCH]", version)
	}
	gotMajor, err1 := strconv.Atoi(parts[0])
	gotMinor, err2 := strconv.Atoi(strings.SplitN(parts[1], "-", 2)[0])
	if err1 != nil || err2 != nil {
		return false, fmt.Errorf("--grafana-version %q: want MAJOR.MINOR[.PATCH]", version)
	}
	return gotMajor > major || (gotMajor == major && gotMinor >= minor), nil
}

// envNames lists the distinct variable names of an environment, sorted.
func envNames(env []string) []string {
	seen := map[string]bool{}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		seen[name] = true
	}
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func lookupHostEnv(name string) (string, bool) { return os.LookupEnv(name) }
