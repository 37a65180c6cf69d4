// Package plugin holds the sample datasource: one instance per configured datasource,
// created by the SDK's instance manager and rebuilt when its settings change.
package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"
	"github.com/grafana/grafana-plugin-sdk-go/backend/resource/httpadapter"
)

// ID is the plugin id from plugin.json.
const ID = "plugin-operator-sample-go-datasource"

// crashEnv names the process-wide crash switch; jsonData.crashAfterQueries overrides it.
const crashEnv = "GF_PLUGIN_CRASH_AFTER_QUERIES"

// Settings is the datasource's jsonData.
type Settings struct {
	ExpectedAPIKey    string `json:"expectedApiKey"`
	CrashAfterQueries int    `json:"crashAfterQueries"`
}

// Datasource is one configured datasource instance.
type Datasource struct {
	backend.CallResourceHandler

	settings  Settings
	apiKey    string
	uid       string
	updated   time.Time
	createdAt time.Time
}

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ backend.StreamHandler         = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// NewDatasource is the instance factory the SDK calls for every new or changed datasource.
func NewDatasource(_ context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	settings, err := parseSettings(s.JSONData)
	if err != nil {
		return nil, err
	}
	if settings.CrashAfterQueries == 0 {
		settings.CrashAfterQueries = crashAfterFromEnv()
	}
	ds := &Datasource{
		settings:  settings,
		apiKey:    s.DecryptedSecureJSONData["apiKey"],
		uid:       s.UID,
		updated:   s.Updated,
		createdAt: time.Now(),
	}
	ds.CallResourceHandler = httpadapter.New(ds.routes())
	instancesCreated.Inc()
	log.DefaultLogger.Info("datasource instance created", "uid", s.UID, "updated", s.Updated)
	return ds, nil
}

func parseSettings(raw json.RawMessage) (Settings, error) {
	var s Settings
	if len(raw) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("jsonData is not valid for this datasource: %w", err)
	}
	if s.CrashAfterQueries < 0 {
		return s, fmt.Errorf("jsonData.crashAfterQueries must be 0 (off) or positive, not %d", s.CrashAfterQueries)
	}
	return s, nil
}

func crashAfterFromEnv() int {
	n, err := strconv.Atoi(os.Getenv(crashEnv))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Dispose is called by the SDK when the instance is replaced after a settings change.
func (d *Datasource) Dispose() {
	log.DefaultLogger.Info("datasource instance disposed", "uid", d.uid)
}
