package talos

import (
	"context"
	"fmt"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// DefaultCallTimeout bounds one Talos API call that sets no deadline of its
// own: a node answers a version or an etcd status in milliseconds.
const DefaultCallTimeout = 10 * time.Second

// Keepalive notices a connection that went silent in about ten seconds: a
// ping after five seconds without traffic on an open stream, five seconds
// for its answer.
var Keepalive = keepalive.ClientParameters{Time: 5 * time.Second, Timeout: 5 * time.Second}

// retried are the calls that change nothing on the node: when an endpoint
// does not answer in time (or is gone), they are tried again, and the
// talosconfig's round-robin balancer sends them to the next endpoint.
var retried = map[string]bool{
	"/machine.MachineService/Version":               true,
	"/machine.MachineService/EtcdMemberList":        true,
	"/machine.MachineService/EtcdStatus":            true,
	"/machine.MachineService/EtcdForfeitLeadership": true,
	"/cosi.resource.State/Get":                      true,
	"/cosi.resource.State/List":                     true,
}

// Bounds bound every call of a Talos client.
type Bounds struct {
	// Call bounds each unary call (default DefaultCallTimeout); a deadline
	// of the caller's that comes sooner wins, so no call outlives its step.
	Call time.Duration
	// Log is told when an endpoint did not answer and the call goes on to
	// the next one.
	Log func(msg string)
}

// NewClient is the Talos client of a talosconfig file, with every call
// bounded: a deadline on each unary call, keepalive on the connections,
// and the calls that change nothing tried on the next endpoint of the
// talosconfig when one goes silent or away.
func NewClient(ctx context.Context, talosconfig string, b Bounds) (*client.Client, error) {
	if b.Call <= 0 {
		b.Call = DefaultCallTimeout
	}
	return client.New(ctx, client.WithConfigFromFile(talosconfig), client.WithGRPCDialOptions(
		grpc.WithKeepaliveParams(Keepalive),
		grpc.WithChainUnaryInterceptor(b.unary),
	))
}

// unary bounds one call and tries a call that changes nothing again, up
// to three times, when its endpoint did not answer.
func (b Bounds) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	attempts := 1
	if retried[method] {
		attempts = 3
	}
	var err error
	for i := range attempts {
		var p peer.Peer
		cctx, cancel := context.WithTimeout(ctx, b.Call)
		err = invoker(cctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		code := status.Code(err)
		if code != codes.DeadlineExceeded && code != codes.Unavailable {
			return err
		}
		where := "an endpoint"
		if p.Addr != nil {
			where = "endpoint " + p.Addr.String()
		}
		if code == codes.DeadlineExceeded {
			err = fmt.Errorf("the Talos API %s did not answer %s within %s: %w", where, method, b.Call, err)
		}
		if b.Log != nil && i+1 < attempts {
			b.Log(fmt.Sprintf("the Talos API %s did not answer %s (%s); trying the next endpoint", where, method, code))
		}
	}
	return err
}
