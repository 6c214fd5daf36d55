package talos

import (
	"context"
	"fmt"
	"net"
	"sort"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
)

// Links reads the node's physical network links from its Talos API (the
// LinkStatus and AddressStatus resources): name, hardware address and the
// addresses each carries.
func (a *API) Links(ctx context.Context, pn plan.Node) ([]rollout.Link, error) {
	n := pn.Node
	nctx := a.nodeCtx(ctx, n)
	links, err := safe.StateListAll[*network.LinkStatus](nctx, a.Client.COSI)
	if err != nil {
		return nil, fmt.Errorf("list the network links of %s: %w", n.Name, err)
	}
	addrs, err := safe.StateListAll[*network.AddressStatus](nctx, a.Client.COSI)
	if err != nil {
		return nil, fmt.Errorf("list the addresses of %s: %w", n.Name, err)
	}
	return linksOf(links, addrs), nil
}

func linksOf(links safe.List[*network.LinkStatus], addrs safe.List[*network.AddressStatus]) []rollout.Link {
	byLink := map[string][]string{}
	for a := range addrs.All() {
		s := a.TypedSpec()
		byLink[s.LinkName] = append(byLink[s.LinkName], s.Address.String())
	}
	var out []rollout.Link
	for l := range links.All() {
		s := l.TypedSpec()
		if !s.Physical() {
			continue
		}
		name := l.Metadata().ID()
		sort.Strings(byLink[name])
		out = append(out, rollout.Link{Name: name, HardwareAddr: net.HardwareAddr(s.HardwareAddr).String(), Addresses: byLink[name]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

var _ rollout.LinkReader = (*API)(nil)
