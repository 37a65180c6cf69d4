package plugin

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The SDK serves Prometheus' default registry through CollectMetrics, so registering
// there is all a plugin has to do.
var (
	queriesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sample_go",
		Name:      "queries_total",
		Help:      "Queries handled, by query type and outcome.",
	}, []string{"query_type", "outcome"})
	instancesCreated = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "sample_go",
		Name:      "instances_created_total",
		Help:      "Datasource instances built by the instance factory.",
	})
	healthChecks = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sample_go",
		Name:      "health_checks_total",
		Help:      "Health checks answered, by status.",
	}, []string{"status"})
)
