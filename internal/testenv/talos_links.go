package testenv

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/protobuf"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/extensions"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	"github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/network"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var factoryID = regexp.MustCompile(`-installer/([0-9a-f]{64})`)

// schematicOf is the Image Factory schematic ID of an image reference.
func schematicOf(ref string) string {
	if m := factoryID.FindStringSubmatch(ref); m != nil {
		return m[1]
	}
	return ""
}

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

// Get serves the node's active machine configuration: only its install
// image is set (drover reads nothing else of it).
func (s talosStateServer) Get(ctx context.Context, req *cosiv1alpha1.GetRequest) (*cosiv1alpha1.GetResponse, error) {
	f := s.f
	f.mu.Lock()
	n, _, err := f.node(ctx, "COSI.Get "+req.GetType())
	var image string
	if n != nil {
		image = n.image
	}
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if req.GetType() != config.MachineConfigType || req.GetId() != config.ActiveID {
		return nil, status.Errorf(codes.NotFound, "resource %s %s doesn't exist", req.GetType(), req.GetId())
	}
	r := config.NewMachineConfig(container.NewV1Alpha1(&v1alpha1.Config{ConfigVersion: "v1alpha1", MachineConfig: &v1alpha1.MachineConfig{
		MachineType: "worker", MachineInstall: &v1alpha1.InstallConfig{InstallImage: image},
	}}))
	m, err := marshalResource(r)
	if err != nil {
		return nil, err
	}
	return &cosiv1alpha1.GetResponse{Resource: m}, nil
}

func marshalResource(r resource.Resource) (*cosiv1alpha1.Resource, error) {
	pr, err := protobuf.FromResource(r)
	if err != nil {
		return nil, err
	}
	return pr.Marshal()
}

func (s talosStateServer) List(req *cosiv1alpha1.ListRequest, srv grpc.ServerStreamingServer[cosiv1alpha1.ListResponse]) error {
	f := s.f
	f.mu.Lock()
	n, ip, err := f.node(srv.Context(), "COSI.List "+req.GetType())
	links := append([]Link(nil), f.links[ip]...)
	var exts []string
	schematic := ""
	if n != nil {
		schematic = schematicOf(n.image)
		if n.booted != "" {
			schematic = n.booted
		}
		exts = f.schematics[schematic]
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	var out []resource.Resource
	if req.GetType() == runtime.ExtensionStatusType {
		if schematic != "" {
			e := runtime.NewExtensionStatus(runtime.NamespaceName, "0")
			e.TypedSpec().Metadata = extensions.Metadata{Name: "schematic", Version: schematic}
			out = append(out, e)
		}
		for i, x := range exts {
			e := runtime.NewExtensionStatus(runtime.NamespaceName, fmt.Sprint(i+1))
			e.TypedSpec().Metadata = extensions.Metadata{Name: x, Version: "v1.0.0"}
			out = append(out, e)
		}
	}
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
		m, err := marshalResource(r)
		if err != nil {
			return err
		}
		if err := srv.Send(&cosiv1alpha1.ListResponse{Resource: m}); err != nil {
			return err
		}
	}
	return nil
}
