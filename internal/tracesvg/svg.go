package tracesvg

import (
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Layout of the picture, in SVG user units (pixels).
const (
	rowHeight   = 22
	labelWidth  = 500 // service and span name, indented by depth
	indentStep  = 12
	durWidth    = 80 // the duration column after the timeline
	headerLines = 2  // title, then the time axis
	maxNameLen  = 52 // longer names (SQL statements) are cut
)

// palette colours services in the order of their sorted names, so the same
// trace always gets the same picture.
var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac"}

// Render draws t as a waterfall: one row per span, indented by its
// depth, a bar at its offset from the trace's start, its duration, and a
// legend of services. Hovering a row shows its attributes (an SVG title),
// as clicking a span does in Jaeger.
func Render(w io.Writer, t Trace, title string, width int) error {
	rs := rows(t)
	start, end := rs[0].Start, rs[0].End
	services := map[string]bool{}
	for _, r := range rs {
		if r.Start.Before(start) {
			start = r.Start
		}
		if r.End.After(end) {
			end = r.End
		}
		services[r.Service] = true
	}
	var names []string
	for s := range services {
		names = append(names, s)
	}
	sort.Strings(names)
	colour := map[string]string{}
	for i, s := range names {
		colour[s] = palette[i%len(palette)]
	}
	total := end.Sub(start)
	if total <= 0 {
		total = time.Microsecond
	}
	timeline := width - labelWidth - durWidth
	if timeline < 100 {
		return fmt.Errorf("width %d leaves no room for the timeline (at least %d)", width, labelWidth+durWidth+100)
	}
	x := func(at time.Time) float64 {
		return labelWidth + float64(at.Sub(start))/float64(total)*float64(timeline)
	}
	top := headerLines * rowHeight
	legendTop := top + len(rs)*rowHeight + rowHeight/2
	height := legendTop + rowHeight*((len(names)+3)/4) + rowHeight/2

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	if title == "" {
		title = "trace " + t.ID
	}
	p(`<text x="8" y="16" font-size="14" font-weight="bold">%s</text>`+"\n", esc(fmt.Sprintf("%s: %d spans, %d services, %s", title, len(rs), len(names), fmtDur(total))))

	// Time axis: five ticks with a faint line down through every row.
	axisY := rowHeight + 16
	for i := 0; i <= 4; i++ {
		tx := float64(labelWidth) + float64(timeline)*float64(i)/4
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case 4:
			anchor = "end"
		}
		p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#dddddd"/>`+"\n", tx, axisY+4, tx, top+len(rs)*rowHeight)
		p(`<text x="%.1f" y="%d" fill="#555555" text-anchor="%s">%s</text>`+"\n", tx, axisY, anchor, esc(fmtDur(total*time.Duration(i)/4)))
	}

	for i, r := range rs {
		y := top + i*rowHeight
		if i%2 == 0 {
			p(`<rect x="0" y="%d" width="%d" height="%d" fill="#f6f6f6"/>`+"\n", y, width, rowHeight)
		}
		p(`<g><title>%s</title>`+"\n", esc(tooltip(r.Span, start)))
		c := colour[r.Service]
		lx := 8 + r.Depth*indentStep
		p(`<rect x="%d" y="%d" width="4" height="%d" fill="%s"/>`+"\n", lx, y+4, rowHeight-8, c)
		name := r.Name
		if runes, limit := []rune(name), max(8, maxNameLen-r.Depth); len(runes) > limit {
			name = string(runes[:limit-1]) + "…"
		}
		fill := "#222222"
		if r.Error {
			fill = "#c62828"
			name += " (error)"
		}
		p(`<text x="%d" y="%d" fill="%s"><tspan fill="#777777">%s</tspan><tspan dx="6">%s</tspan></text>`+"\n", lx+8, y+15, fill, esc(r.Service), esc(name))
		bx, bw := x(r.Start), x(r.End)-x(r.Start)
		if bw < 1 {
			bw = 1
		}
		stroke := ""
		if r.Error {
			stroke = ` stroke="#c62828" stroke-width="1.5"`
		}
		p(`<rect x="%.1f" y="%d" width="%.1f" height="%d" rx="2" fill="%s"%s/>`+"\n", bx, y+5, bw, rowHeight-10, c, stroke)
		p(`<text x="%d" y="%d" fill="#333333" text-anchor="end">%s</text>`+"\n", width-8, y+15, esc(fmtDur(r.End.Sub(r.Start))))
		p("</g>\n")
	}

	for i, s := range names {
		lx := 8 + (i%4)*((width-16)/4)
		y := legendTop + (i/4)*rowHeight
		p(`<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`+"\n", lx, y, colour[s])
		p(`<text x="%d" y="%d">%s</text>`+"\n", lx+18, y+11, esc(s))
	}
	p("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// tooltip lists what Jaeger shows when a span is opened: service, name,
// start offset, duration, and the attributes in key order.
func tooltip(s Span, traceStart time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\nstart +%s, duration %s", s.Service, s.Name, fmtDur(s.Start.Sub(traceStart)), fmtDur(s.End.Sub(s.Start)))
	keys := make([]string, 0, len(s.Attributes))
	for k := range s.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "\n%s = %s", k, s.Attributes[k])
	}
	return b.String()
}

// fmtDur prints a duration the way Jaeger labels spans: µs below a
// millisecond, ms with two decimals below a second, then seconds.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// esc escapes text for an SVG element or attribute.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
