package testenv

import (
	"net"
	"net/netip"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/protobuf"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"google.golang.org/grpc"
)

// Link is one network link of a simulated node, as its Talos API reports it.
type Link struct {
	Name, MAC string
	// Addresses are CIDR prefixes such as 10.20.67.11/24.
	Addresses []string
}

// SetLinks sets the network links the node at ip reports (LinkStatus and
// AddressStatus resources through the COSI state API).
func (f *TalosAPI) SetLinks(ip string, links []Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links[ip] = links
}

// talosStateServer serves the COSI state API's List for the network
// resources drover reads; the real client decodes them with the real
// resource registry.
type talosStateServer struct {
	cosiv1alpha1.UnimplementedStateServer
	f *TalosAPI
}

func (s talosStateServer) List(req *cosiv1alpha1.ListRequest, srv grpc.ServerStreamingServer[cosiv1alpha1.ListResponse]) error {
	f := s.f
	f.mu.Lock()
	_, ip, err := f.node(srv.Context(), "COSI.List "+req.GetType())
	links := append([]Link(nil), f.links[ip]...)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	var out []resource.Resource
	for _, l := range links {
		switch req.GetType() {
		case network.LinkStatusType:
			r := network.NewLinkStatus(network.NamespaceName, l.Name)
			mac, err := net.ParseMAC(l.MAC)
			if err != nil {
				return err
			}
			r.TypedSpec().Type = nethelpers.LinkEther
			r.TypedSpec().HardwareAddr = nethelpers.HardwareAddr(mac)
			out = append(out, r)
		case network.AddressStatusType:
			for _, a := range l.Addresses {
				r := network.NewAddressStatus(network.NamespaceName, l.Name+"/"+a)
				r.TypedSpec().LinkName = l.Name
				r.TypedSpec().Address = netip.MustParsePrefix(a)
				out = append(out, r)
			}
		}
	}
	for _, r := range out {
		pr, err := protobuf.FromResource(r)
		if err != nil {
			return err
		}
		m, err := pr.Marshal()
		if err != nil {
			return err
		}
		if err := srv.Send(&cosiv1alpha1.ListResponse{Resource: m}); err != nil {
			return err
		}
	}
	return nil
}
