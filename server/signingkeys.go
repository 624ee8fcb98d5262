package server

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/auditexport/auditexport/ent"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
	"github.com/auditexport/auditexport/internal/signing"
)

var errNoSigningKeys = errors.New("the server was built without signing keys (WithSigningKeys)")

// signingKeyPB is the public half of a signing key; the private half never
// leaves the server.
func signingKeyPB(k *ent.SigningKey) *pb.SigningKey {
	out := &pb.SigningKey{Id: k.ID, Algorithm: k.Algorithm, PublicKey: k.PublicKey, Fingerprint: signing.Fingerprint(k.PublicKey),
		Active: k.RetireTime == nil, CreateTime: timestamppb.New(k.CreateTime)}
	if k.RetireTime != nil {
		out.RetireTime = timestamppb.New(*k.RetireTime)
	}
	return out
}

func signingKeysPB(rows []*ent.SigningKey) []*pb.SigningKey {
	out := make([]*pb.SigningKey, 0, len(rows))
	for _, k := range rows {
		out = append(out, signingKeyPB(k))
	}
	return out
}

// ListSigningKeys implements pb.AccountServiceServer. Public keys are no
// secret: any member may hand them to an auditor.
func (s *AccountService) ListSigningKeys(ctx context.Context, _ *pb.ListSigningKeysRequest) (*pb.ListSigningKeysResponse, error) {
	if s.signing == nil {
		return nil, internalError(ctx, s.log, "signing keys", errNoSigningKeys)
	}
	rows, err := s.signing.List(ctx)
	if err != nil {
		return nil, internalError(ctx, s.log, "list signing keys", err)
	}
	return &pb.ListSigningKeysResponse{SigningKeys: signingKeysPB(rows)}, nil
}

// RotateSigningKey implements pb.AccountServiceServer.
func (s *AccountService) RotateSigningKey(ctx context.Context, _ *pb.RotateSigningKeyRequest) (*pb.RotateSigningKeyResponse, error) {
	if err := requireAdmin(ctx, "rotate signing keys"); err != nil {
		return nil, err
	}
	if s.signing == nil {
		return nil, internalError(ctx, s.log, "signing keys", errNoSigningKeys)
	}
	row, err := s.signing.Rotate(ctx)
	if err != nil {
		return nil, internalError(ctx, s.log, "rotate signing key", err)
	}
	s.log.InfoContext(ctx, "manifest signing key rotated", "signing_key_id", row.ID, "fingerprint", signing.Fingerprint(row.PublicKey))
	return &pb.RotateSigningKeyResponse{SigningKey: signingKeyPB(row)}, nil
}
