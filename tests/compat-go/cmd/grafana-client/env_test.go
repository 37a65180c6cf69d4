package main

import (
	"reflect"
	"testing"
)

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

func TestGrafanaPluginEnvFollowsGrafanasRules(t *testing.T) {
	host := map[string]string{
		"GF_PLUGIN_OVERRIDDEN": "from-grafanas-env", // Grafana's own env wins when non-empty
		"GF_PLUGIN_EMPTY_OWN":  "",
		"HTTPS_PROXY":          "http://proxy:3128",
		"no_proxy":             "",
		"HOME":                 "/root",
	}
	settings := []setting{
		{"grpc_address_my_ds", "10.0.0.7:10000"},
		{"path", "/somewhere"}, // never passed
		{"ID", "x"},            // never passed, whatever its case
		{"overridden", "from-ini"},
		{"empty_own", "from-ini"},
		{"with-dash", "kept"}, // only upper-cased: Grafana does not replace '-'
	}
	got := grafanaPluginEnv("12.4.0", settings, []string{"EXTRA=1"}, true, lookupIn(host))
	want := []string{
		"GF_VERSION=12.4.0",
		"GF_PLUGIN_GRPC_ADDRESS_MY_DS=10.0.0.7:10000",
		"GF_PLUGIN_OVERRIDDEN=from-grafanas-env",
		"GF_PLUGIN_EMPTY_OWN=from-ini",
		"GF_PLUGIN_WITH-DASH=kept",
		"EXTRA=1",
		"HTTPS_PROXY=http://proxy:3128",
		"no_proxy=",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("skipping host env:\n got %q\nwant %q", got, want)
	}
	forwarded := grafanaPluginEnv("12.3.0", settings[:1], nil, false, lookupIn(host))
	if want := []string{"GF_VERSION=12.3.0", "GF_PLUGIN_GRPC_ADDRESS_MY_DS=10.0.0.7:10000"}; !reflect.DeepEqual(forwarded, want) {
		t.Fatalf("forwarding host env (go-plugin adds it):\n got %q\nwant %q", forwarded, want)
	}
}

func TestSkipsHostEnv(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		version string
		list    []string
		forward *bool
		skip    bool
	}{
		{"12.3.9", nil, nil, false},
		{"12.4.0", nil, nil, true},
		{"13.0.0-pre", nil, nil, true},
		{"12.4.0", []string{"other", "my-ds"}, nil, false},
		{"12.4.0", []string{"other"}, nil, true},
		{"12.4.0", nil, &yes, false},
		{"11.0.0", nil, &no, true},
	}
	for _, c := range cases {
		got, err := skipsHostEnv(c.version, "my-ds", c.list, c.forward)
		if err != nil || got != c.skip {
			t.Errorf("skipsHostEnv(%q, %v, %v) = %v, %v; want %v", c.version, c.list, c.forward, got, err, c.skip)
		}
	}
	if _, err := skipsHostEnv("latest", "my-ds", nil, nil); err == nil {
		t.Error("a version without MAJOR.MINOR must be refused")
	}
}

func TestSplitListReadsLikeGrafana(t *testing.T) {
	for text, want := range map[string][]string{
		"":           {},
		"a,b":        {"a", "b"},
		" a , b c,,": {"a", "b", "c"},
		`["a", "b"]`: {"a", "b"},
		"my-ds":      {"my-ds"},
	} {
		if got := splitList(text); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("splitList(%q) = %q, want %q", text, got, want)
		}
	}
}
