package server

import (
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Codec is the server's proto codec. grpc-go answers a request body that
// does not parse with INTERNAL, before any interceptor runs; a malformed
// request is the caller's fault, so this codec hands our RPCs' handlers an
// empty message instead and remembers the parse error, and the interceptors
// answer INVALID_ARGUMENT (after authentication and with an audit row, like
// any other refusal).
func Codec() encoding.CodecV2 {
	return requestCodec{encoding.GetCodecV2(grpcproto.Name)}
}

type requestCodec struct{ encoding.CodecV2 }

// parseErrors holds the parse error of each request message the codec
// could not fill, until the interceptor takes it (undecodable).
var parseErrors sync.Map // proto.Message -> error

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok || !strings.HasPrefix(string(m.ProtoReflect().Descriptor().FullName()), "auditexport.v1.") {
		return err
	}
	// Only our services take auditexport.v1 messages, and every call of
	// theirs passes the interceptors, which take the entry out again.
	proto.Reset(m)
	parseErrors.Store(m, err)
	return nil
}

// undecodable returns INVALID_ARGUMENT if the codec could not parse req,
// and forgets it.
func undecodable(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	perr, bad := parseErrors.LoadAndDelete(m)
	if !bad {
		return nil
	}
	return newStatus(codes.InvalidArgument, "MALFORMED_REQUEST", "the request is not a valid "+
		string(m.ProtoReflect().Descriptor().FullName())+" message: "+perr.(error).Error())
}
