// Command gpx_sample_go is a backend datasource built only with Grafana's Go plugin SDK.
// plugin-operator runs it to prove that unmodified SDK plugins work under its host.
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"plugin-operator.dev/plugins/sample-go/pkg/plugin"
)

func main() {
	if err := datasource.Manage(plugin.ID, plugin.NewDatasource, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error("serving the plugin failed", "error", err.Error())
		os.Exit(1)
	}
}
