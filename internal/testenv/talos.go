package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TalosAPI is a Talos API server for tests: the services drover calls,
// over mTLS, for several simulated nodes told apart by the "node" metadata
// the real client sets (client.WithNode). Only the nodes are simulated;
// the client, TLS and gRPC are real.
type TalosAPI struct {
	machineapi.UnimplementedMachineServiceServer

	mu     sync.Mutex
	nodes  map[string]*talosNode // by IP
	leader uint64
	calls  []string
	// fail makes a call fail: key "Method" or "Method ip".
	fail map[string]error
	// exitCode is the LifecycleService Upgrade exit code (per target tag).
	exitCode map[string]int32
	// rebootFor is how long a rebooting node does not answer.
	rebootFor time.Duration
	// OnBoot, when set, is told when a node comes back from a reboot, with
	// the version it now runs (e.g. to update its simulated kubelet).
	OnBoot func(ip, name, version string)
	// links are the nodes' network links (SetLinks), by IP.
	links map[string][]Link
	// OnCall, when set, is told of every call (method, node IP), on a
	// goroutine of its own: a test stops an endpoint in the middle of a step.
	OnCall func(method, ip string)
	// schematics are the system extensions of each schematic ID, as Image
	// Factory builds them (SetSchematic).
	schematics map[string][]string
	// missing are the images ImageService pulls fail for (not in the
	// registry).
	missing map[string]bool
}

type talosNode struct {
	name, version, pending string
	// image is the install image of its machine configuration;
	// pendingImage the one an upgrade installed, booted at the reboot.
	image, pendingImage string
	// booted overrides the schematic the node booted (its machine
	// configuration's install image names another).
	booted     string
	downUntil  time.Time
	member     uint64
	etcdErrors []string
}

// NewTalosAPI returns a Talos API with no node; Add adds them.
func NewTalosAPI() *TalosAPI {
	return &TalosAPI{nodes: map[string]*talosNode{}, fail: map[string]error{}, exitCode: map[string]int32{}, rebootFor: 300 * time.Millisecond, links: map[string][]Link{},
		schematics: map[string][]string{}, missing: map[string]bool{}}
}

// Add adds a node at ip running Talos version; a member other than 0
// makes it a control-plane node with that etcd member ID.
func (f *TalosAPI) Add(ip, name, version string, member uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[ip] = &talosNode{name: name, version: version, member: member}
}

// node finds the target node and records the call; l must be held.
func (f *TalosAPI) node(ctx context.Context, method string) (*talosNode, string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	ips := md.Get("node")
	if len(ips) != 1 {
		return nil, "", status.Error(codes.InvalidArgument, "want exactly one node in the metadata")
	}
	ip := ips[0]
	f.calls = append(f.calls, method+" "+ip)
	if f.OnCall != nil {
		go f.OnCall(method, ip)
	}
	n := f.nodes[ip]
	if n == nil {
		return nil, ip, status.Errorf(codes.NotFound, "no node %s", ip)
	}
	if time.Now().Before(n.downUntil) {
		return nil, ip, status.Error(codes.Unavailable, "connection refused: rebooting")
	}
	if err := f.fail[method]; err != nil {
		return nil, ip, err
	}
	if err := f.fail[method+" "+ip]; err != nil {
		return nil, ip, err
	}
	return n, ip, nil
}

// CallsOf lists the node addresses method was called on, in order.
func (f *TalosAPI) CallsOf(method string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, method+" ") {
			out = append(out, strings.TrimPrefix(c, method+" "))
		}
	}
	return out
}

func meta(ip string) *common.Metadata { return &common.Metadata{Hostname: ip} }

func tagOf(image string) string { return image[strings.LastIndex(image, ":")+1:] }

// Version answers the node's Talos version.
func (f *TalosAPI) Version(ctx context.Context, _ *emptypb.Empty) (*machineapi.VersionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ip, err := f.node(ctx, "Version")
	if err != nil {
		return nil, err
	}
	return &machineapi.VersionResponse{Messages: []*machineapi.Version{{Metadata: meta(ip), Version: &machineapi.VersionInfo{Tag: n.version}}}}, nil
}

// Reboot reboots the node: it is down for a while and comes back at the
// version an upgrade staged, if any.
func (f *TalosAPI) Reboot(ctx context.Context, _ *machineapi.RebootRequest) (*machineapi.RebootResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ip, err := f.node(ctx, "Reboot")
	if err != nil {
		return nil, err
	}
	f.reboot(n)
	return &machineapi.RebootResponse{Messages: []*machineapi.Reboot{{Metadata: meta(ip)}}}, nil
}

func (f *TalosAPI) reboot(n *talosNode) {
	n.downUntil = time.Now().Add(f.rebootFor)
	if n.pending != "" {
		n.version, n.pending = n.pending, ""
	}
	if n.pendingImage != "" {
		n.image, n.pendingImage, n.booted = n.pendingImage, "", ""
	}
	if f.OnBoot != nil {
		ip, name, v, d := "", n.name, n.version, f.rebootFor
		for k, o := range f.nodes {
			if o == n {
				ip = k
			}
		}
		go func() {
			time.Sleep(d)
			f.OnBoot(ip, name, v)
		}()
	}
}

// Upgrade is the legacy MachineService Upgrade: install and reboot.
func (f *TalosAPI) Upgrade(ctx context.Context, req *machineapi.UpgradeRequest) (*machineapi.UpgradeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ip, err := f.node(ctx, "LegacyUpgrade")
	if err != nil {
		return nil, err
	}
	n.pending, n.pendingImage = tagOf(req.GetImage()), req.GetImage()
	f.reboot(n)
	return &machineapi.UpgradeResponse{Messages: []*machineapi.Upgrade{{Metadata: meta(ip), Ack: "Upgrade request received"}}}, nil
}

type talosImageServer struct {
	machineapi.UnimplementedImageServiceServer
	f *TalosAPI
}

func (i talosImageServer) Pull(req *machineapi.ImageServicePullRequest, srv grpc.ServerStreamingServer[machineapi.ImageServicePullResponse]) error {
	return i.f.pull(req, srv)
}

func (f *TalosAPI) pull(req *machineapi.ImageServicePullRequest, srv grpc.ServerStreamingServer[machineapi.ImageServicePullResponse]) error {
	f.mu.Lock()
	_, _, err := f.node(srv.Context(), "ImagePull")
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if !strings.Contains(req.GetImageRef(), "-installer/") {
		return status.Errorf(codes.InvalidArgument, "not an installer image: %s", req.GetImageRef())
	}
	f.mu.Lock()
	missing := f.missing[req.GetImageRef()]
	f.mu.Unlock()
	if missing {
		return status.Errorf(codes.NotFound, "failed to pull image %q: %s: not found", req.GetImageRef(), req.GetImageRef())
	}
	return nil
}

// lifecycle is LifecycleService.Upgrade (wired through talosLifecycleServer).
func (f *TalosAPI) lifecycle(req *machineapi.LifecycleServiceUpgradeRequest, srv grpc.ServerStreamingServer[machineapi.LifecycleServiceUpgradeResponse]) error {
	f.mu.Lock()
	n, _, err := f.node(srv.Context(), "LifecycleUpgrade")
	tag := tagOf(req.GetSource().GetImageName())
	code := f.exitCode[tag]
	f.mu.Unlock()
	if err != nil {
		return err
	}
	progress := func(p *machineapi.LifecycleServiceInstallProgress) error {
		return srv.Send(&machineapi.LifecycleServiceUpgradeResponse{Progress: p})
	}
	for _, m := range []string{"verifying image", "writing " + tag + " to the boot partition"} {
		if err := progress(&machineapi.LifecycleServiceInstallProgress{Response: &machineapi.LifecycleServiceInstallProgress_Message{Message: m}}); err != nil {
			return err
		}
	}
	if err := progress(&machineapi.LifecycleServiceInstallProgress{Response: &machineapi.LifecycleServiceInstallProgress_ExitCode{ExitCode: code}}); err != nil {
		return err
	}
	if code == 0 {
		f.mu.Lock()
		n.pending, n.pendingImage = tag, req.GetSource().GetImageName()
		f.mu.Unlock()
	}
	return nil
}

type talosLifecycleServer struct {
	machineapi.UnimplementedLifecycleServiceServer
	f *TalosAPI
}

func (l talosLifecycleServer) Upgrade(req *machineapi.LifecycleServiceUpgradeRequest, srv grpc.ServerStreamingServer[machineapi.LifecycleServiceUpgradeResponse]) error {
	return l.f.lifecycle(req, srv)
}

// EtcdMemberList lists the etcd members.
func (f *TalosAPI) EtcdMemberList(ctx context.Context, _ *machineapi.EtcdMemberListRequest) (*machineapi.EtcdMemberListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ip, err := f.node(ctx, "EtcdMemberList")
	if err != nil {
		return nil, err
	}
	var members []*machineapi.EtcdMember
	for _, n := range f.nodes {
		if n.member != 0 {
			members = append(members, &machineapi.EtcdMember{Id: n.member, Hostname: n.name})
		}
	}
	return &machineapi.EtcdMemberListResponse{Messages: []*machineapi.EtcdMembers{{Metadata: meta(ip), Members: members}}}, nil
}

// EtcdStatus answers the node's etcd status (member ID, leader).
func (f *TalosAPI) EtcdStatus(ctx context.Context, _ *emptypb.Empty) (*machineapi.EtcdStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ip, err := f.node(ctx, "EtcdStatus")
	if err != nil {
		return nil, err
	}
	return &machineapi.EtcdStatusResponse{Messages: []*machineapi.EtcdStatus{{Metadata: meta(ip), MemberStatus: &machineapi.EtcdMemberStatus{MemberId: n.member, Leader: f.leader, Errors: n.etcdErrors}}}}, nil
}

// EtcdSnapshot streams a small snapshot.
func (f *TalosAPI) EtcdSnapshot(_ *machineapi.EtcdSnapshotRequest, srv grpc.ServerStreamingServer[common.Data]) error {
	f.mu.Lock()
	n, _, err := f.node(srv.Context(), "EtcdSnapshot")
	f.mu.Unlock()
	if err != nil {
		return err
	}
	for i := range 3 {
		if err := srv.Send(&common.Data{Bytes: []byte(fmt.Sprintf("etcd-snapshot-chunk-%d-from-%s;", i, n.name))}); err != nil {
			return err
		}
	}
	return nil
}

// EtcdForfeitLeadership hands leadership to another member.
func (f *TalosAPI) EtcdForfeitLeadership(ctx context.Context, _ *machineapi.EtcdForfeitLeadershipRequest) (*machineapi.EtcdForfeitLeadershipResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ip, err := f.node(ctx, "EtcdForfeitLeadership")
	if err != nil {
		return nil, err
	}
	if f.leader == n.member {
		for _, o := range f.nodes {
			if o.member != 0 && o.member != n.member {
				f.leader = o.member
				break
			}
		}
	}
	return &machineapi.EtcdForfeitLeadershipResponse{Messages: []*machineapi.EtcdForfeitLeadership{{Metadata: meta(ip)}}}, nil
}

// EtcdLeaveCluster removes the node's member from etcd.
func (f *TalosAPI) EtcdLeaveCluster(ctx context.Context, _ *machineapi.EtcdLeaveClusterRequest) (*machineapi.EtcdLeaveClusterResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ip, err := f.node(ctx, "EtcdLeaveCluster")
	if err != nil {
		return nil, err
	}
	n.member = 0
	return &machineapi.EtcdLeaveClusterResponse{Messages: []*machineapi.EtcdLeaveCluster{{Metadata: meta(ip)}}}, nil
}

// talosPKI is a CA with a server and a client certificate.
type talosPKI struct {
	caPEM, serverCert, serverKey, clientCert, clientKey []byte
}

func newTalosPKI(t testing.TB) talosPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "talos-test-ca"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(cn string, server bool) (certPEM, keyPEM []byte) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"os:admin"}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
		if server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	}
	p := talosPKI{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	p.serverCert, p.serverKey = leaf("talos-test-server", true)
	p.clientCert, p.clientKey = leaf("drover", false)
	return p
}

// Serve starts the fake on a loopback port over mTLS and returns a
// talosconfig (its bytes) for it.
func (f *TalosAPI) Serve(t testing.TB) []byte {
	t.Helper()
	cfg, _ := f.ServeEndpoints(t, 1)
	return cfg
}

// ServeEndpoints starts the fake over mTLS behind n loopback endpoints, as
// the control-plane nodes of a talosconfig are (each endpoint's apid
// reaches every node), and returns the talosconfig naming all of them.
// Each endpoint can stop (its connections reset, new ones refused) or go
// silent (connections accepted, nothing answered), as a node whose VM is
// destroyed or whose network hangs.
func (f *TalosAPI) ServeEndpoints(t testing.TB, n int) ([]byte, []*Endpoint) {
	t.Helper()
	p := newTalosPKI(t)
	cert, err := tls.X509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})))
	machineapi.RegisterMachineServiceServer(srv, f)
	machineapi.RegisterImageServiceServer(srv, talosImageServer{f: f})
	machineapi.RegisterLifecycleServiceServer(srv, talosLifecycleServer{f: f})
	cosiv1alpha1.RegisterStateServer(srv, talosStateServer{f: f})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	var eps []*Endpoint
	var addrs []string
	for range n {
		ep := newEndpoint(t, l.Addr().String())
		eps = append(eps, ep)
		addrs = append(addrs, ep.Addr)
	}
	b64 := base64.StdEncoding.EncodeToString
	cfg := &clientconfig.Config{Context: "test", Contexts: map[string]*clientconfig.Context{"test": {
		Endpoints: addrs, CA: b64(p.caPEM), Crt: b64(p.clientCert), Key: b64(p.clientKey),
	}}}
	data, err := cfg.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data, eps
}

// Endpoint is one address of the Talos API: a TCP proxy to the server that
// a test can stop or silence.
type Endpoint struct {
	Addr    string
	backend string
	l       net.Listener
	mu      sync.Mutex
	conns   []net.Conn
	silent  bool
	stopped bool
	// held are the connections accepted while silent: open, never answered.
	held []net.Conn
	// stop is closed when the endpoint stops.
	stop chan struct{}
}

func newEndpoint(t testing.TB, backend string) *Endpoint {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &Endpoint{Addr: l.Addr().String(), backend: backend, l: l, stop: make(chan struct{})}
	go e.accept()
	t.Cleanup(e.Stop)
	return e
}

func (e *Endpoint) accept() {
	for {
		c, err := e.l.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		if e.stopped {
			e.mu.Unlock()
			_ = c.Close()
			return
		}
		if e.silent {
			e.held = append(e.held, c)
			e.mu.Unlock()
			continue
		}
		e.mu.Unlock()
		go e.pipe(c)
	}
}

// pipe forwards a connection while the endpoint speaks; once silent, it
// stops forwarding in both directions without closing anything.
func (e *Endpoint) pipe(c net.Conn) {
	b, err := net.Dial("tcp", e.backend)
	if err != nil {
		_ = c.Close()
		return
	}
	e.mu.Lock()
	e.conns = append(e.conns, c, b)
	e.mu.Unlock()
	copyUnlessSilent := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				e.mu.Lock()
				silent := e.silent
				e.mu.Unlock()
				if silent {
					<-e.stop // the bytes vanish; the connection stays open
					return
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				_ = dst.Close()
				return
			}
		}
	}
	go copyUnlessSilent(b, c)
	go copyUnlessSilent(c, b)
}

// Silence makes the endpoint accept connections and answer nothing, on
// the connections it has and on new ones.
func (e *Endpoint) Silence() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.silent = true
}

// Stop closes the endpoint: its connections are reset and new ones refused.
func (e *Endpoint) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	e.stopped = true
	close(e.stop)
	_ = e.l.Close()
	for _, c := range append(e.conns, e.held...) {
		_ = c.Close()
	}
}

// SetExitCode makes the LifecycleService upgrade to tag exit with code.
func (f *TalosAPI) SetExitCode(tag string, code int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exitCode[tag] = code
}

// Fail makes a call fail: key is "Method" or "Method ip".
func (f *TalosAPI) Fail(key string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[key] = err
}

// SetLeader makes the member with this ID the etcd leader.
func (f *TalosAPI) SetLeader(id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader = id
}

// Leader is the etcd leader's member ID.
func (f *TalosAPI) Leader() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

// SetMember sets the etcd member ID of the node at ip (0: not a member).
func (f *TalosAPI) SetMember(ip string, id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[ip].member = id
}

// SetEtcdErrors makes the node's etcd member report errors.
func (f *TalosAPI) SetEtcdErrors(ip string, errs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[ip].etcdErrors = errs
}

// Calls lists every call as "Method ip".
func (f *TalosAPI) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// SetImage sets the install image the node at ip was installed from; its
// schematic (and so its extensions, SetSchematic) is the image's.
func (f *TalosAPI) SetImage(ip, ref string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[ip].image = ref
}

// SetBooted makes the node at ip report it booted schematic id, whatever
// its machine configuration's install image says.
func (f *TalosAPI) SetBooted(ip, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[ip].booted = id
}

// SetSchematic says which system extensions images of a schematic ID boot.
func (f *TalosAPI) SetSchematic(id string, extensions ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.schematics[id] = extensions
}

// SetMissing makes pulls of an image fail, as a registry without it does.
func (f *TalosAPI) SetMissing(ref string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.missing[ref] = true
}

// NodeImage is the install image of the node at ip.
func (f *TalosAPI) NodeImage(ip string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[ip].image
}

// NodeVersion is the version the node at ip runs.
func (f *TalosAPI) NodeVersion(ip string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[ip].version
}
