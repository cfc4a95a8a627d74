package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"

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

// Every series carries server: the monitoring address it was read from
// (nats-1:8222), so a cluster's nodes are told apart and a node that is
// down is named by its nats_up 0. A replicated (R3) stream is reported by
// each node that holds a replica; take max by (stream) over the nodes.
var (
	upDesc          = prometheus.NewDesc("nats_up", "1 when the node's NATS monitoring endpoint answered this scrape.", []string{"server"}, nil)
	connectionsDesc = prometheus.NewDesc("nats_connections", "Client connections to the node now.", []string{"server"}, nil)
	inMsgsDesc      = prometheus.NewDesc("nats_in_msgs_total", "Messages received by the node.", []string{"server"}, nil)
	outMsgsDesc     = prometheus.NewDesc("nats_out_msgs_total", "Messages sent by the node.", []string{"server"}, nil)
	slowDesc        = prometheus.NewDesc("nats_slow_consumers_total", "Clients the node cut off for reading too slowly.", []string{"server"}, nil)
	streamMsgsDesc  = prometheus.NewDesc("nats_jetstream_stream_messages", "Messages kept in a JetStream stream, as the node's replica holds them (DEADLETTER holds the dead letters).", []string{"server", "stream"}, nil)
	pendingDesc     = prometheus.NewDesc("nats_jetstream_consumer_pending", "Messages of the stream not yet delivered to the consumer.", []string{"server", "stream", "consumer"}, nil)
	ackPendingDesc  = prometheus.NewDesc("nats_jetstream_consumer_ack_pending", "Messages delivered to the consumer and not yet acknowledged.", []string{"server", "stream", "consumer"}, nil)
	redeliveredDesc = prometheus.NewDesc("nats_jetstream_consumer_redelivered", "Messages redelivered to the consumer and not yet acknowledged.", []string{"server", "stream", "consumer"}, nil)
)

// collector reads NATS's monitoring endpoints of every node on every
// scrape, so the series are never older than the scrape itself.
type collector struct {
	monitorURLs []string
	client      *http.Client
}

func newCollector(monitorURLs []string, client *http.Client) *collector {
	return &collector{monitorURLs: monitorURLs, client: client}
}

// Describe sends every descriptor the collector may emit.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, connectionsDesc, inMsgsDesc, outMsgsDesc, slowDesc,
		streamMsgsDesc, pendingDesc, ackPendingDesc, redeliveredDesc} {
		ch <- d
	}
}

// Collect reads every node at once, so one node that is down (and times
// out) does not delay the others.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	var wg sync.WaitGroup
	for _, u := range c.monitorURLs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.collectNode(ch, u)
		}()
	}
	wg.Wait()
}

// collectNode reads one node's /varz and /jsz. When the node does not
// answer, only its nats_up 0 is emitted: a gap is the truth, stale numbers
// would not be.
func (c *collector) collectNode(ch chan<- prometheus.Metric, monitorURL string) {
	server := monitorURL
	if u, err := url.Parse(monitorURL); err == nil && u.Host != "" {
		server = u.Host
	}
	var v varz
	var j jsz
	if err := c.get(monitorURL, "/varz", &v); err != nil {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0, server)
		return
	}
	if err := c.get(monitorURL, "/jsz?accounts=true&streams=true&consumers=true", &j); err != nil {
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0, server)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1, server)
	ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(v.Connections), server)
	ch <- prometheus.MustNewConstMetric(inMsgsDesc, prometheus.CounterValue, float64(v.InMsgs), server)
	ch <- prometheus.MustNewConstMetric(outMsgsDesc, prometheus.CounterValue, float64(v.OutMsgs), server)
	ch <- prometheus.MustNewConstMetric(slowDesc, prometheus.CounterValue, float64(v.SlowConsumers), server)
	for _, a := range j.Accounts {
		for _, s := range a.Streams {
			ch <- prometheus.MustNewConstMetric(streamMsgsDesc, prometheus.GaugeValue, float64(s.State.Messages), server, s.Name)
			for _, cons := range s.Consumers {
				ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(cons.NumPending), server, s.Name, cons.Name)
				ch <- prometheus.MustNewConstMetric(ackPendingDesc, prometheus.GaugeValue, float64(cons.NumAckPending), server, s.Name, cons.Name)
				ch <- prometheus.MustNewConstMetric(redeliveredDesc, prometheus.GaugeValue, float64(cons.NumRedeliverd), server, s.Name, cons.Name)
			}
		}
	}
}

func (c *collector) get(monitorURL, path string, into any) error {
	resp, err := c.client.Get(monitorURL + path)
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
