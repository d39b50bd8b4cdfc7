package router

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the router's Prometheus metrics. Requests to endpoints that
// are not on the cluster count under endpoint "", so that made-up names
// cannot grow the label sets.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	state    stateCollector
}

func newMetrics(rt *Router) *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "azureml_fe_requests_total",
			Help: "Requests by endpoint, deployment and HTTP status code (499: the client left first).",
		}, []string{"endpoint", "deployment", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "azureml_fe_request_duration_seconds",
			Help: "Time from a request's arrival to the end of its answer, by endpoint and deployment (requests that got one).",
			// 0.25 ms to 33 s: the router's own share is well under a
			// millisecond; a scoring call can take seconds.
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 18),
		}, []string{"endpoint", "deployment"}),
		state: stateCollector{rt: rt},
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.latency, m.state}
}

// deploymentMetrics are one deployment's series, looked up once per table
// rather than once per request.
type deploymentMetrics struct {
	endpoint, deployment string
	latency              prometheus.Observer
	codes                sync.Map // status code -> prometheus.Counter
}

func (m *metrics) forDeployment(endpoint, deployment string) *deploymentMetrics {
	return &deploymentMetrics{endpoint: endpoint, deployment: deployment, latency: m.latency.WithLabelValues(endpoint, deployment)}
}

func (m *metrics) observe(o *outcome, status int, d time.Duration) {
	dm := o.metrics
	if dm == nil {
		m.requests.WithLabelValues(o.endpoint, "", strconv.Itoa(status)).Inc()
		return
	}
	c, ok := dm.codes.Load(status)
	if !ok {
		c, _ = dm.codes.LoadOrStore(status, m.requests.WithLabelValues(dm.endpoint, dm.deployment, strconv.Itoa(status)))
	}
	c.(prometheus.Counter).Inc()
	dm.latency.Observe(d.Seconds())
}

var (
	queueDesc = prometheus.NewDesc("azureml_fe_queue_length",
		"Requests waiting for room on a deployment's instances at this replica.", []string{"namespace", "endpoint", "deployment"}, nil)
	inFlightDesc = prometheus.NewDesc("azureml_fe_requests_in_flight",
		"Requests on a deployment's instances from this replica.", []string{"namespace", "endpoint", "deployment"}, nil)
	instancesDesc = prometheus.NewDesc("azureml_fe_instances_ready",
		"Ready instances of a deployment.", []string{"namespace", "endpoint", "deployment"}, nil)
	replicasDesc = prometheus.NewDesc("azureml_fe_replicas_ready",
		"Ready router replicas sharing each instance's concurrency.", nil, nil)
)

// stateCollector reads queue lengths, requests in flight and instances at
// scrape time, so that requests pay nothing for them and deployments that
// left leave no series behind.
type stateCollector struct{ rt *Router }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDesc
	ch <- inFlightDesc
	ch <- instancesDesc
	ch <- replicasDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.rt.livePools() {
		inFlight, queued, ready := p.load()
		lv := []string{p.namespace, p.endpoint, p.deployment}
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(queued), lv...)
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(inFlight), lv...)
		ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(ready), lv...)
	}
	ch <- prometheus.MustNewConstMetric(replicasDesc, prometheus.GaugeValue, float64(c.rt.snap.Load().replicas))
}
