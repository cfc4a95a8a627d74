// Package tracesvg draws one trace as a waterfall SVG, the picture Jaeger's
// UI shows: one row per span, indented by depth, a bar at its offset from
// the trace's start, its duration, and a legend of services. It reads
// Jaeger's query API answer (GET /api/traces/{id}) or a dev stack trace dump
// (cmd/devstack's DEVSTACK_TRACE_DIR format).
//
// It is shared by cmd/tracesvg, a tool for the docs, and the console
// (services/console), which draws a payment's trace inline when there is no
// Jaeger UI to link to.
package tracesvg
