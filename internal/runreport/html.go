package runreport

import (
	"fmt"
	"hash/fnv"
	"html/template"
	"io"
	"time"

	"github.com/prox-ops/drover/internal/rollout"
)

// svgBar is one bar of the SVG chart, laid out.
type svgBar struct {
	X, Y, W  float64
	Colour   string
	Title    string
	Label    string
	ShowText bool
}

type svgRow struct {
	Y    float64
	Name string
}

type svgTick struct {
	X     float64
	Label string
}

type chart struct {
	Width, Height, Left, Top, RowH float64
	Bars                           []svgBar
	Rows                           []svgRow
	Ticks                          []svgTick
}

// colourOf colours a step, the same step the same colour; a failed step
// is red.
func colourOf(step string) string {
	palette := [...]string{"#4e79a7", "#59a14f", "#9c755f", "#b07aa1", "#76b7b2", "#edc948", "#f28e2b", "#bab0ac", "#86bcb6", "#8cd17d"}
	h := fnv.New32a()
	_, _ = h.Write([]byte(step))
	return palette[int(h.Sum32())%len(palette)]
}

// layout places the bars: a row per node, time across.
func layout(d Doc) *chart {
	bs := bars(d)
	if len(bs) == 0 {
		return nil
	}
	c := &chart{Width: 960, Left: 130, Top: 24, RowH: 22}
	from, to := window(bs)
	span := to.Sub(from)
	if span <= 0 {
		span = time.Second
	}
	plot := c.Width - c.Left - 10
	x := func(t time.Time) float64 { return c.Left + plot*float64(t.Sub(from))/float64(span) }
	rows := map[string]int{}
	for _, b := range bs {
		if _, ok := rows[b.node]; !ok {
			rows[b.node] = len(rows)
			c.Rows = append(c.Rows, svgRow{Y: c.Top + float64(rows[b.node])*c.RowH, Name: b.node})
		}
		colour := colourOf(b.step)
		if b.failed {
			colour = "#e15759"
		}
		w := max(x(b.end)-x(b.start), 1)
		c.Bars = append(c.Bars, svgBar{X: x(b.start), Y: c.Top + float64(rows[b.node])*c.RowH + 3, W: w, Colour: colour,
			Title: fmt.Sprintf("%s %s: %s (%s → %s)", b.node, b.step, short(b.end.Sub(b.start)), b.start.UTC().Format("15:04:05"), b.end.UTC().Format("15:04:05")),
			Label: b.step, ShowText: w > float64(len(b.step))*6.5})
	}
	c.Height = c.Top + float64(len(rows))*c.RowH + 24
	for i := 0; i <= 4; i++ {
		t := from.Add(span * time.Duration(i) / 4)
		c.Ticks = append(c.Ticks, svgTick{X: x(t), Label: t.UTC().Format("15:04")})
	}
	return c
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"target": targetNote, "health": healthVerdict, "short": short, "dash": orDash,
	"trigger":   triggerText,
	"secs":      func(s float64) string { return short(time.Duration(s * float64(time.Second))) },
	"templates": func() string { return short(rollout.TemplatesTarget) },
	"rfc3339":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>drover test-results report: {{.D.RunID}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f4f4f4}.missed{color:#c00}.rolled-back,.failed,.rollback-failed,.halted{color:#c00;font-weight:bold}
.upgraded,.succeeded{color:#060}svg text{font-size:11px;font-family:system-ui,sans-serif}
</style></head><body>
<h1>drover test-results report: {{dash .D.Strategy}} upgrade <span class="{{.D.Result}}">{{.D.Result}}</span></h1>
<table>
<tr><th>Run</th><td><code>{{.D.RunID}}</code></td></tr>
<tr><th>Versions</th><td>{{.D.From}} → {{.D.To}}</td></tr>
{{if .D.Rationale}}<tr><th>Why</th><td>{{.D.Rationale}}</td></tr>{{end}}
{{if not .D.Started.IsZero}}<tr><th>Started</th><td>{{rfc3339 .D.Started}}</td></tr>{{end}}
<tr><th>Duration</th><td>{{short .D.Duration}}</td></tr>
{{with .D.Trigger}}<tr><th>Trigger</th><td>{{trigger .}}</td></tr>{{end}}
{{if .D.Source}}<tr><th>Read from</th><td>{{.D.Source}}</td></tr>{{end}}
</table>
{{if .D.Error}}<p><strong>{{.D.Error}}</strong></p>{{end}}
<h2>Nodes</h2>
<table><tr><th>Node</th><th>Role</th><th>Batch</th><th>Old → New</th><th>Duration</th><th>PRD target</th><th>Health</th><th>Result</th></tr>
{{range .D.Nodes}}<tr><td>{{.Name}}</td><td>{{.Role}}</td><td>{{.Batch}}</td><td>{{.From}} → {{.To}}</td><td>{{if .Duration}}{{short .Duration}}{{else}}-{{end}}</td><td{{if .MissedTarget}} class="missed"{{end}}>{{target .}}</td><td>{{health .}}</td><td class="{{.Outcome}}">{{.Outcome}}</td></tr>
{{end}}</table>
{{if .D.TemplatesSeconds}}<p>Templates: {{secs .D.TemplatesSeconds}} (PRD target ≤ {{templates}}).</p>{{end}}
{{if .D.MissedTargets}}<h3 class="missed">Targets missed</h3><ul>{{range .D.MissedTargets}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .C}}<h2>Timeline</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="Gantt chart of the run's nodes by step">
{{range .Rows}}<text x="4" y="{{.Y}}" dy="15">{{.Name}}</text>
{{end}}{{range .Ticks}}<line x1="{{.X}}" x2="{{.X}}" y1="{{$.C.Top}}" y2="{{$.C.Height}}" stroke="#ddd"/><text x="{{.X}}" y="14" text-anchor="middle">{{.Label}}</text>
{{end}}{{range .Bars}}<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="16" fill="{{.Colour}}"><title>{{.Title}}</title></rect>{{if .ShowText}}<text x="{{.X}}" y="{{.Y}}" dx="3" dy="12" fill="#fff">{{.Label}}</text>{{end}}
{{end}}</svg>{{end}}
{{with .Rollbacks}}<h2>Rollbacks</h2><ul>{{range .}}<li><strong>{{.Name}}</strong>: {{.Outcome}}{{if .FailedChecks}} (failed checks: {{range $i, $c := .FailedChecks}}{{if $i}}, {{end}}{{$c}}{{end}}){{end}}{{if .Reason}}: {{.Reason}}{{end}}</li>{{end}}</ul>{{end}}
{{with .D.KnownBeforeRun}}<h2>Known before the run</h2><ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{end}}
<h2>Notifications</h2>{{with .Notes}}<ul>{{range .}}<li>{{.}}</li>{{end}}</ul>{{else}}<p>None sent (no webhook configured, or none recorded).</p>{{end}}
</body></html>
`))

// HTML writes the report as one self-contained page with an SVG Gantt
// chart; every value is escaped.
func HTML(w io.Writer, d Doc) error {
	return page.Execute(w, struct {
		D         Doc
		C         *chart
		Rollbacks []rollout.NodeReport
		Notes     []string
	}{d, layout(d), rollbacks(d), notificationSummary(d)})
}
