package plugin

import (
	"context"
	"encoding/json"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// CheckHealth is OK only when the secure field apiKey equals jsonData.expectedApiKey.
func (d *Datasource) CheckHealth(_ context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	status, message := backend.HealthStatusOk, "API key accepted"
	switch {
	case d.settings.ExpectedAPIKey == "":
		status, message = backend.HealthStatusError,
			"jsonData.expectedApiKey is not set; set it to the API key this datasource should accept"
	case d.apiKey == "":
		status, message = backend.HealthStatusError,
			"the secure field apiKey is empty; set secureJsonData.apiKey"
	case d.apiKey != d.settings.ExpectedAPIKey:
		status, message = backend.HealthStatusError,
			"the secure field apiKey does not match jsonData.expectedApiKey"
	}
	healthChecks.WithLabelValues(status.String()).Inc()
	details, err := json.Marshal(map[string]any{
		"uid":           d.uid,
		"settingsMs":    d.updated.UnixMilli(),
		"instanceSince": d.createdAt.UTC().Format("2006-01-02T15:04:05.000Z"),
	})
	if err != nil {
		return nil, err
	}
	return &backend.CheckHealthResult{Status: status, Message: message, JSONDetails: details}, nil
}
