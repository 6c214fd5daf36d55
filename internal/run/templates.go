package run

import (
	"context"
	"errors"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/version"
)

// Templates is what building a cattle change's templates ahead did.
type Templates struct {
	Strategy string `json:"strategy"`
	To       string `json:"to"`
	// Result: built, present (already there: nothing was applied) or
	// nothing-to-do.
	Result  string  `json:"result"`
	Seconds float64 `json:"seconds"`
	Reason  string  `json:"reason,omitempty"`
}

// The results of BuildTemplates.
const (
	TemplatesBuilt   = "built"
	TemplatesPresent = "present"
	NothingToDo      = "nothing-to-do"
)

// ErrRebuildTemplates is the refusal to build templates ahead under
// terraform.templates: rebuild.
var ErrRebuildTemplates = errors.New("terraform.templates: rebuild replaces the templates in place at fixed VM ids; built ahead, the new ones would replace the templates a rollback clones from before the upgrade even starts. " +
	"Keep one template per version (terraform.templates: keep) to build them ahead, or let the upgrade build them")

// BuildTemplates builds the templates a cattle change clones its VMs
// from, ahead of the upgrade, exactly as the upgrade's template phase does.
func BuildTemplates(ctx context.Context, p *Planned) (Templates, error) {
	res := Templates{Strategy: string(p.Decision.Strategy), To: p.Change.To.String()}
	switch {
	case p.Decision.Strategy == version.NoChange:
		res.Result, res.Reason = NothingToDo, "every node already runs "+p.Change.To.String()
		return res, nil
	case p.Decision.Strategy == version.Pets:
		res.Result, res.Reason = NothingToDo, "a pets upgrade changes the nodes in place and clones no VM"
		return res, nil
	case p.Config.Terraform.Templates == config.TemplatesRebuild:
		return res, Usage(ErrRebuildTemplates)
	}
	clk := p.Site.Clock()
	start := clk.Now()
	built, err := p.Site.BuildTemplates(ctx, p)
	if err != nil {
		return res, err
	}
	res.Seconds = clk.Now().Sub(start).Seconds()
	res.Result = TemplatesPresent
	if built {
		res.Result = TemplatesBuilt
	}
	return res, nil
}
