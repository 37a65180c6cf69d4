package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// Plan is what the client does in one session: the PluginContext Grafana would build and
// the calls to make, in order, against one plugin process.
type Plan struct {
	PluginID      string            `json:"pluginId"`
	OrgID         int64             `json:"orgId"`
	Datasource    *DatasourceSpec   `json:"datasource"`
	GrafanaConfig map[string]string `json:"grafanaConfig"`
	Calls         []Call            `json:"calls"`
}

// DatasourceSpec is a datasource row as Grafana stores it, secure fields decrypted.
type DatasourceSpec struct {
	ID             int64             `json:"id"`
	UID            string            `json:"uid"`
	Name           string            `json:"name"`
	URL            string            `json:"url"`
	JSONData       json.RawMessage   `json:"jsonData"`
	SecureJSONData map[string]string `json:"secureJsonData"`
	LastUpdatedMS  int64             `json:"lastUpdatedMS"`
}

// Call is one RPC. Which fields matter depends on Call.
type Call struct {
	Call      string            `json:"call"` // health|query|resource|metrics|subscribe|stream|publish
	Format    string            `json:"format"`
	Queries   []json.RawMessage `json:"queries"`
	FromMs    int64             `json:"fromMs"`
	ToMs      int64             `json:"toMs"`
	Method    string            `json:"method"`
	Path      string            `json:"path"`
	Body      json.RawMessage   `json:"body"`
	Data      json.RawMessage   `json:"data"`
	Packets   int               `json:"packets"`
	TimeoutMs int               `json:"timeoutMs"`
	// LastUpdatedMS, when set, replaces the datasource's for this call, as if it had been
	// saved again, so instance rebuilding can be tested.
	LastUpdatedMS int64 `json:"lastUpdatedMS"`
	// AnsweredBy names a key of the reply's JSON object (health details, resource body)
	// whose value says which server answered, e.g. "pid" or "hostname".
	AnsweredBy string `json:"answeredBy"`
}

func loadPlan(path string) (*Plan, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = readAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the plan: %w", err)
	}
	var plan Plan
	if err := json.Unmarshal(raw, &plan); err != nil {
		return nil, fmt.Errorf("the plan %s is not valid JSON for a plan: %w", path, err)
	}
	return &plan, plan.validate()
}

func (p *Plan) validate() error {
	if p.PluginID == "" {
		return fmt.Errorf("the plan needs pluginId (the plugin.json id), as Grafana always sends it")
	}
	known := map[string]bool{"health": true, "query": true, "resource": true, "metrics": true,
		"subscribe": true, "stream": true, "publish": true}
	for i, c := range p.Calls {
		if !known[c.Call] {
			return fmt.Errorf("calls[%d]: unknown call %q; use health, query, resource, metrics, subscribe, stream or publish", i, c.Call)
		}
		if c.Format != "" && c.Format != "arrow" && c.Format != "json" {
			return fmt.Errorf("calls[%d]: format must be arrow or json, not %q", i, c.Format)
		}
	}
	return nil
}

// pluginContext builds what Grafana puts in every request for this datasource.
func (p *Plan) pluginContext(c Call) backend.PluginContext {
	pc := backend.PluginContext{
		OrgID:         max(p.OrgID, 1),
		PluginID:      p.PluginID,
		PluginVersion: "1.0.0",
		User:          &backend.User{Login: "admin", Name: "admin", Email: "admin@localhost", Role: "Admin"},
		GrafanaConfig: backend.NewGrafanaCfg(p.GrafanaConfig),
	}
	if d := p.Datasource; d != nil {
		pc.DataSourceInstanceSettings = &backend.DataSourceInstanceSettings{
			ID:                      d.ID,
			UID:                     d.UID,
			Type:                    p.PluginID,
			Name:                    d.Name,
			URL:                     d.URL,
			JSONData:                d.JSONData,
			DecryptedSecureJSONData: d.SecureJSONData,
			Updated:                 time.UnixMilli(d.LastUpdatedMS),
		}
		if c.LastUpdatedMS != 0 {
			pc.DataSourceInstanceSettings.Updated = time.UnixMilli(c.LastUpdatedMS)
		}
	}
	return pc
}
