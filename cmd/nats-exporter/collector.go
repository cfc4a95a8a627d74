package main

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// varz is the part of NATS's /varz this exporter reads.
type varz struct {
	Connections   int64 `json:"connections"`
	InMsgs        int64 `json:"in_msgs"`
	OutMsgs       int64 `json:"out_msgs"`
	SlowConsumers int64 `json:"slow_consumers"`
}

// jsz is the part of /jsz?accounts=true&streams=true&consumers=true read
// here: every account's streams, each with its consumers.
type jsz struct {
	Accounts []struct {
		Streams []struct {
			Name  string `json:"name"`
			State struct {
				Messages uint64 `json:"messages"`
			} `json:"state"`
			Consumers []struct {
				Name          string `json:"name"`
				NumPending    uint64 `json:"num_pending"`
				NumAckPending int64  `json:"num_ack_pending"`
				NumRedeliverd int64  `json:"num_redelivered"`
			} `json:"consumer_detail"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

var (
	upDesc          = prometheus.NewDesc("nats_up", "1 when the NATS monitoring endpoint answered this scrape.", nil, nil)
	connectionsDesc = prometheus.NewDesc("nats_connections", "Client connections now.", nil, nil)
	inMsgsDesc      = prometheus.NewDesc("nats_in_msgs_total", "Messages received by the server.", nil, nil)
	outMsgsDesc     = prometheus.NewDesc("nats_out_msgs_total", "Messages sent by the server.", nil, nil)
	slowDesc        = prometheus.NewDesc("nats_slow_consumers_total", "Clients the server cut off for reading too slowly.", nil, nil)
	streamMsgsDesc  = prometheus.NewDesc("nats_jetstream_stream_messages", "Messages kept in a JetStream stream (DEADLETTER holds the dead letters).", []string{"stream"}, nil)
	pendingDesc     = prometheus.NewDesc("nats_jetstream_consumer_pending", "Messages of the stream not yet delivered to the consumer.", []string{"stream", "consumer"}, nil)
	ackPendingDesc  = prometheus.NewDesc("nats_jetstream_consumer_ack_pending", "Messages delivered to the consumer and not yet acknowledged.", []string{"stream", "consumer"}, nil)
	redeliveredDesc = prometheus.NewDesc("nats_jetstream_consumer_redelivered", "Messages redelivered to the consumer and not yet acknowledged.", []string{"stream", "consumer"}, nil)
)

// collector reads NATS's monitoring endpoints on every scrape, so the
// series are never older than the scrape itself.
type collector struct {
	monitorURL string
	client     *http.Client
}

func newCollector(monitorURL string, client *http.Client) *collector {
	return &collector{monitorURL: monitorURL, client: client}
}

// Describe sends every descriptor the collector may emit.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, connectionsDesc, inMsgsDesc, outMsgsDesc, slowDesc,
		streamMsgsDesc, pendingDesc, ackPendingDesc, redeliveredDesc} {
		ch <- d
	}
}

// Collect reads /varz and /jsz. When NATS does not answer, only nats_up 0
// is emitted: a gap is the truth, stale numbers would not be.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	var v varz
	var j jsz
	if err := c.get("/varz", &v); err != nil {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	if err := c.get("/jsz?accounts=true&streams=true&consumers=true", &j); err != nil {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(v.Connections))
	ch <- prometheus.MustNewConstMetric(inMsgsDesc, prometheus.CounterValue, float64(v.InMsgs))
	ch <- prometheus.MustNewConstMetric(outMsgsDesc, prometheus.CounterValue, float64(v.OutMsgs))
	ch <- prometheus.MustNewConstMetric(slowDesc, prometheus.CounterValue, float64(v.SlowConsumers))
	for _, a := range j.Accounts {
		for _, s := range a.Streams {
			ch <- prometheus.MustNewConstMetric(streamMsgsDesc, prometheus.GaugeValue, float64(s.State.Messages), s.Name)
			for _, cons := range s.Consumers {
				ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(cons.NumPending), s.Name, cons.Name)
				ch <- prometheus.MustNewConstMetric(ackPendingDesc, prometheus.GaugeValue, float64(cons.NumAckPending), s.Name, cons.Name)
				ch <- prometheus.MustNewConstMetric(redeliveredDesc, prometheus.GaugeValue, float64(cons.NumRedeliverd), s.Name, cons.Name)
			}
		}
	}
}

func (c *collector) get(path string, into any) error {
	resp, err := c.client.Get(c.monitorURL + path)
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
