package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/rollout"
)

// Discord's limits for one message's embeds.
const (
	maxTitle       = 256
	maxDescription = 4096
	maxFields      = 25
	maxFieldName   = 256
	maxFieldValue  = 1024
	maxTotal       = 6000
)

// Colours of the embeds.
const (
	colourInfo    = 0x3498db
	colourSuccess = 0x2ecc71
	colourRed     = 0xe74c3c
	colourAlarm   = 0x8e44ad
)

// Embed is a Discord embed.
type Embed struct {
	Title       string  `json:"title,omitempty"`
	Description string  `json:"description,omitempty"`
	Color       int     `json:"color,omitempty"`
	Fields      []Field `json:"fields,omitempty"`
	Timestamp   string  `json:"timestamp,omitempty"`
}

// Field is an embed field.
type Field struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Inline bool   `json:"inline,omitempty"`
}

// Message is a webhook payload.
type Message struct {
	Username string  `json:"username,omitempty"`
	Embeds   []Embed `json:"embeds"`
}

// Delivery is what became of one notification.
type Delivery struct {
	Event     string `json:"event"`
	Delivered bool   `json:"delivered"`
	Attempts  int    `json:"attempts"`
	Error     string `json:"error,omitempty"`
}

// Discord posts run events to a webhook. It never blocks or fails the
// upgrade: messages go through a queue to a sender goroutine, which honours
// 429 retry_after, backs off on 5xx, and records what it could not deliver.
type Discord struct {
	URL    string
	Client *http.Client
	// Clock paces retries (the wall clock: the webhook is real).
	Clock clock.Clock
	// Mask masks secrets in every message.
	Mask        func(string) string
	MaxAttempts int
	// Backoff is the first pause after a 5xx; it doubles.
	Backoff time.Duration

	once       sync.Once
	queue      chan pending
	done       chan struct{}
	mu         sync.Mutex
	deliveries []Delivery
	// waiting are the queued messages not yet sent or given up, by their
	// queue number, so that a Close that cannot wait names each.
	waiting map[int]string
	seq     int
	closed  bool
	// down: the last message failed every attempt; the next ones get a
	// single try each until one goes through, so a dead webhook cannot
	// hold the end of a run.
	down bool
}

type pending struct {
	id    int
	event string
	msg   Message
}

var _ rollout.Sink = (*Discord)(nil)

func (d *Discord) start() {
	d.once.Do(func() {
		if d.Client == nil {
			d.Client = &http.Client{Timeout: 10 * time.Second}
		}
		if d.Clock == nil {
			d.Clock = clock.Real{}
		}
		if d.MaxAttempts <= 0 {
			d.MaxAttempts = 4
		}
		if d.Backoff <= 0 {
			d.Backoff = 500 * time.Millisecond
		}
		d.queue = make(chan pending, 256)
		d.waiting = map[int]string{}
		d.done = make(chan struct{})
		go d.sender()
	})
}

// Event turns an engine event into a message, if it is one people get.
func (d *Discord) Event(e rollout.Event) {
	msg, name, ok := MessageFor(e)
	if !ok {
		return
	}
	d.Send(name, msg)
}

// Send queues a message; a full queue drops it and records that.
func (d *Discord) Send(event string, msg Message) {
	d.start()
	d.mu.Lock()
	d.seq++
	id := d.seq
	d.waiting[id] = event
	d.mu.Unlock()
	select {
	case d.queue <- pending{id: id, event: event, msg: Fit(d.masked(msg))}:
	default:
		d.settle(id, Delivery{Event: event, Error: "dropped: the notification queue is full"})
	}
}

// Close waits up to timeout for queued messages, then gives up on them,
// and returns what became of every notification.
func (d *Discord) Close(timeout time.Duration) []Delivery {
	d.start()
	close(d.queue)
	select {
	case <-d.done:
	case <-time.After(timeout):
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	// Each message still waiting is named: the report says which people
	// did not get.
	ids := make([]int, 0, len(d.waiting))
	for id := range d.waiting {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		d.deliveries = append(d.deliveries, Delivery{Event: d.waiting[id],
			Error: fmt.Sprintf("not delivered: the webhook had not answered when the run ended (waited %s)", timeout)})
	}
	d.waiting = map[int]string{}
	return append([]Delivery(nil), d.deliveries...)
}

// settle records what became of a queued message, unless Close gave up
// on it already.
func (d *Discord) settle(id int, del Delivery) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.waiting[id]; !ok || d.closed {
		return
	}
	delete(d.waiting, id)
	d.deliveries = append(d.deliveries, del)
}

func (d *Discord) sender() {
	defer close(d.done)
	for p := range d.queue {
		del := d.deliver(p)
		d.down = !del.Delivered
		d.settle(p.id, del)
	}
}

func (d *Discord) deliver(p pending) Delivery {
	body, _ := json.Marshal(p.msg)
	del := Delivery{Event: p.event}
	wait := d.Backoff
	attempts := d.MaxAttempts
	if d.down {
		attempts = 1
	}
	for del.Attempts < attempts {
		del.Attempts++
		resp, err := d.Client.Post(d.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			del.Error = d.mask(err.Error())
		} else {
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			switch {
			case resp.StatusCode < 300:
				del.Delivered, del.Error = true, ""
				return del
			case resp.StatusCode == http.StatusTooManyRequests:
				del.Error = "rate limited (429)"
				_ = d.Clock.Sleep(context.Background(), retryAfter(resp, data))
				continue
			case resp.StatusCode >= 500:
				del.Error = "webhook answered " + resp.Status
			default:
				del.Error = "webhook refused the message: " + resp.Status + " " + d.mask(strings.TrimSpace(string(data)))
				return del
			}
		}
		if del.Attempts < attempts {
			_ = d.Clock.Sleep(context.Background(), wait)
			wait *= 2
		}
	}
	return del
}

// retryAfter reads Discord's retry_after (seconds, in the JSON body) or the
// Retry-After header.
func retryAfter(resp *http.Response, body []byte) time.Duration {
	var rl struct {
		RetryAfter float64 `json:"retry_after"`
	}
	if json.Unmarshal(body, &rl) == nil && rl.RetryAfter > 0 {
		return time.Duration(rl.RetryAfter * float64(time.Second))
	}
	if s, err := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64); err == nil && s > 0 {
		return time.Duration(s * float64(time.Second))
	}
	return time.Second
}

func (d *Discord) mask(s string) string {
	if d.Mask == nil {
		return s
	}
	return d.Mask(s)
}

func (d *Discord) masked(m Message) Message {
	out := Message{Username: m.Username}
	for _, e := range m.Embeds {
		e.Title, e.Description = d.mask(e.Title), d.mask(e.Description)
		fields := make([]Field, len(e.Fields))
		for i, f := range e.Fields {
			fields[i] = Field{Name: d.mask(f.Name), Value: d.mask(f.Value), Inline: f.Inline}
		}
		e.Fields = fields
		out.Embeds = append(out.Embeds, e)
	}
	return out
}

// truncate cuts s to n runes, marking the cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// Fit trims a message to Discord's limits: title, description, field
// counts and sizes, and 6000 characters in all (descriptions shrink first,
// then fields are dropped from the end).
func Fit(m Message) Message {
	for i := range m.Embeds {
		e := &m.Embeds[i]
		e.Title = truncate(e.Title, maxTitle)
		e.Description = truncate(e.Description, maxDescription)
		if len(e.Fields) > maxFields {
			e.Fields = e.Fields[:maxFields]
		}
		for j := range e.Fields {
			e.Fields[j].Name = truncate(e.Fields[j].Name, maxFieldName)
			e.Fields[j].Value = truncate(e.Fields[j].Value, maxFieldValue)
		}
	}
	for total(m) > maxTotal {
		e := &m.Embeds[len(m.Embeds)-1]
		over := total(m) - maxTotal
		switch {
		case utf8.RuneCountInString(e.Description) > over+1:
			e.Description = truncate(e.Description, utf8.RuneCountInString(e.Description)-over)
		case len(e.Fields) > 0:
			e.Fields = e.Fields[:len(e.Fields)-1]
		default:
			e.Description = truncate(e.Description, 1)
			if len(m.Embeds) == 1 {
				return m
			}
			m.Embeds = m.Embeds[:len(m.Embeds)-1]
		}
	}
	return m
}

func total(m Message) int {
	n := 0
	for _, e := range m.Embeds {
		n += utf8.RuneCountInString(e.Title) + utf8.RuneCountInString(e.Description)
		for _, f := range e.Fields {
			n += utf8.RuneCountInString(f.Name) + utf8.RuneCountInString(f.Value)
		}
	}
	return n
}

// MessageFor is the Discord message for an engine event: run start, each
// node done, a rollback (🔴), a failed rollback (🚨) and the run summary.
func MessageFor(e rollout.Event) (Message, string, bool) {
	ts := e.Time.UTC().Format(time.RFC3339)
	one := func(name string, em Embed) (Message, string, bool) {
		em.Timestamp = ts
		return Message{Username: "drover", Embeds: []Embed{em}}, name, true
	}
	switch e.Kind {
	case rollout.EventRunStarted:
		return one("run-start", Embed{Title: "drover: upgrade started", Description: e.Message, Color: colourInfo})
	case rollout.EventNodeDone:
		return nodeMessage(e, one)
	case rollout.EventRollback:
		n := e.NodeReport
		checks := "-"
		if n != nil && len(n.FailedChecks) > 0 {
			checks = strings.Join(n.FailedChecks, ", ")
		}
		return one("rollback", Embed{Title: "🔴 Rolling back " + e.Node, Description: e.Message, Color: colourRed, Fields: []Field{
			{Name: "Failed checks", Value: checks},
		}})
	case rollout.EventRunFinished:
		r := e.Report
		if r == nil {
			return Message{}, "", false
		}
		if r.Result == rollout.ResultRollbackFailed {
			return one("rollback-failed", Embed{Title: "🚨 Rollback failed: manual intervention required", Description: r.Error, Color: colourAlarm})
		}
		if r.Result == rollout.ResultBlocked {
			// Refused before any change: say why, so nobody is left guessing.
			return one("run-blocked", Embed{Title: "⛔ drover: upgrade blocked, nothing changed", Description: r.Error, Color: colourRed, Fields: []Field{
				{Name: "Upgrade", Value: fmt.Sprintf("%s %s → %s", orDash(string(r.Strategy)), orDash(r.From), orDash(r.To))},
			}})
		}
		if r.Result == rollout.ResultCanary {
			return one("canary-paused", Embed{Title: "⏸ drover: canary done, run paused", Description: r.Error, Color: colourInfo})
		}
		if r.Result == rollout.ResultHandedOff {
			return one("handed-off", Embed{Title: "🔁 drover: the run continues on another runner", Description: r.Error, Color: colourInfo})
		}
		var fields []Field
		for _, n := range r.Nodes {
			fields = append(fields, Field{Name: n.Name, Value: fmt.Sprintf("%s (%s → %s)", n.Outcome, n.From, n.To), Inline: true})
		}
		colour := colourSuccess
		if r.Result != rollout.ResultSucceeded {
			colour = colourRed
		}
		desc := fmt.Sprintf("%s %s → %s: **%s** in %s", r.Strategy, r.From, r.To, r.Result, r.Duration.Round(time.Second))
		if r.Error != "" {
			desc += "\n" + r.Error
		}
		return one("run-summary", Embed{Title: "drover: run " + string(r.Result), Description: desc, Color: colour, Fields: fields})
	}
	return Message{}, "", false
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// nodeMessage is a node's own message once it is through: upgraded, rolled
// back (with how long the rollback took), or failed; each names the
// strategy, the duration, and for a failure the reason and failing checks.
func nodeMessage(e rollout.Event, one func(string, Embed) (Message, string, bool)) (Message, string, bool) {
	n := e.NodeReport
	if n == nil {
		return Message{}, "", false
	}
	fields := []Field{
		{Name: "Strategy", Value: orDash(e.Strategy), Inline: true},
		{Name: "Version", Value: n.From + " → " + n.To, Inline: true},
		{Name: "Duration", Value: n.Duration.Round(time.Second).String(), Inline: true},
	}
	checks := "-"
	if len(n.FailedChecks) > 0 {
		checks = strings.Join(n.FailedChecks, ", ")
	}
	switch n.Outcome {
	case rollout.OutcomeUpgraded:
		return one("node-done", Embed{Title: "✅ " + n.Name + " upgraded", Color: colourSuccess, Fields: fields})
	case rollout.OutcomeRolledBack:
		took := "-"
		for _, s := range n.Steps {
			if s.Step == rollout.StepRollback && s.Status == rollout.StatusDone {
				took = s.Finished.Sub(s.Started).Round(time.Second).String()
			}
		}
		fields = append(fields, Field{Name: "Rollback", Value: "completed in " + took + ": back on " + n.From, Inline: true},
			Field{Name: "Failed checks", Value: checks})
		return one("node-rolled-back", Embed{Title: "↩️ " + n.Name + " rolled back", Description: n.Reason, Color: colourRed, Fields: fields})
	case rollout.OutcomeFailed:
		fields = append(fields, Field{Name: "Failed checks", Value: checks})
		return one("node-failed", Embed{Title: "❌ " + n.Name + " failed", Description: n.Reason, Color: colourRed, Fields: fields})
	}
	return Message{}, "", false // untouched, skipped, interrupted: the summary says so
}
