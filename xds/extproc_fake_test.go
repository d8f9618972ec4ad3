package xds_test

import (
	"errors"
	"io"
	"net"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	envoytype "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	fakeRequestID = "test-rid"
	// denyHeader makes the fake answer the header phase with an
	// ImmediateResponse 401 carrying its own JSON body, as extproc does for
	// a bad key.
	denyHeader = "x-test-deny"
	denyBody   = `{"error":{"message":"Invalid API key.","type":"invalid_request_error","code":"invalid_api_key","param":null}}`
)

// fakeExtProc is a minimal ext_proc server: CONTINUE on request headers (plus
// x-sluice-request-id: test-rid) and on the buffered body. It asserts the
// protocol order Envoy must follow with the processing mode Sluice configures.
type fakeExtProc struct {
	extprocv3.UnimplementedExternalProcessorServer
	t *testing.T
}

var _ extprocv3.ExternalProcessorServer = (*fakeExtProc)(nil)

// Process implements [extprocv3.ExternalProcessorServer.Process]: one
// sequential Recv -> Send loop per stream (STYLE rule 1).
func (f *fakeExtProc) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	sawHeaders := false
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil
		}
		if err != nil {
			return err
		}
		var resp *extprocv3.ProcessingResponse
		switch r := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			sawHeaders = true
			if hasHeader(r.RequestHeaders.GetHeaders(), denyHeader) {
				resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
					ImmediateResponse: &extprocv3.ImmediateResponse{
						Status: &envoytype.HttpStatus{Code: envoytype.StatusCode_Unauthorized},
						Body:   []byte(denyBody),
						Headers: &extprocv3.HeaderMutation{SetHeaders: []*core.HeaderValueOption{
							rawHeader("content-type", "application/json"),
							rawHeader("x-sluice-request-id", fakeRequestID),
						}},
					},
				}}
				break
			}
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
				RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
					HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*core.HeaderValueOption{
						rawHeader("x-sluice-request-id", fakeRequestID),
					}},
				}},
			}}
		case *extprocv3.ProcessingRequest_RequestBody:
			if !sawHeaders {
				f.t.Errorf("ext_proc: body before headers")
			}
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
				RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}},
			}}
		default:
			// Response phases are SKIP/NONE in Sluice's processing mode;
			// Envoy must never send them.
			f.t.Errorf("ext_proc: unexpected message %T", r)
			return status.Error(codes.FailedPrecondition, "unexpected phase")
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func hasHeader(h *core.HeaderMap, name string) bool {
	for _, hv := range h.GetHeaders() {
		if hv.GetKey() == name {
			return true
		}
	}
	return false
}

func rawHeader(k, v string) *core.HeaderValueOption {
	return &core.HeaderValueOption{
		Header:       &core.HeaderValue{Key: k, RawValue: []byte(v)},
		AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// startFakeExtProc serves fakeExtProc on a free loopback port and returns its
// address. The server stops at test cleanup.
func startFakeExtProc(t *testing.T) string {
	t.Helper()
	return startFakeExtProcOn(t, "tcp", "127.0.0.1:0")
}

// startFakeExtProcOn serves fakeExtProc on network/addr and returns the bound
// address.
func startFakeExtProcOn(t *testing.T, network, addr string) string {
	t.Helper()
	lis, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, &fakeExtProc{t: t})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return lis.Addr().String()
}
