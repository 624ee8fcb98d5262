package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	auditexport "github.com/auditexport/auditexport/clients/go"
	"github.com/auditexport/auditexport/clients/go/verify"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

type signingKeysCmd struct {
	List   skListCmd   `cmd:"" aliases:"ls" help:"List the organization's manifest signing keys (public halves). Save with -o json for auditctl verify --keys."`
	Rotate skRotateCmd `cmd:"" help:"Make a new signing key that signs from now on; older keys stay listed and keep verifying (ADMIN)."`
}

type skListCmd struct{}

func (skListCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Accounts.ListSigningKeys(ctx, &pb.ListSigningKeysRequest{})
	})
}

type skRotateCmd struct{}

func (skRotateCmd) Run(e *env) error {
	return e.do(func(ctx context.Context, cl *auditexport.Client) (proto.Message, error) {
		return cl.Accounts.RotateSigningKey(ctx, &pb.RotateSigningKeyRequest{})
	})
}

// verifyCmd reads storage directly, with the caller's own credentials.
type verifyCmd struct {
	URI   string `arg:"" name:"destination-uri-prefix" help:"Where the exports are: s3://bucket/prefix/?region=…[&endpoint=…&use_path_style=true], gs://bucket/prefix/, azblob://container/prefix/[?protocol=http&domain=…&localemu=true] or file:///dir/. Credentials come from the provider's environment variables."`
	Keys  string `name:"keys" placeholder:"FILE" help:"The organization's public signing keys: the JSON of 'auditctl signing-keys list -o json' (offline). Without it they are asked from the server."`
	Heads bool   `name:"heads" help:"Also ask the server for each schedule's chain head (Schedule.manifest_chain_length/head), so manifests deleted from the end of a chain are found too."`
}

func (c *verifyCmd) Run(e *env) error {
	keys, err := c.keys(e)
	if err != nil {
		return err
	}
	b, prefix, err := verify.Open(e.ctx, c.URI)
	if err != nil {
		return usageError{err.Error()}
	}
	defer b.Close()
	opt := verify.Options{Keys: keys}
	rep, err := verify.Bucket(e.ctx, b, prefix, opt)
	if err != nil {
		return err
	}
	if c.Heads {
		if opt.Heads, err = c.heads(e, rep); err != nil {
			return err
		}
		if rep, err = verify.Bucket(e.ctx, b, prefix, opt); err != nil {
			return err
		}
	}
	if e.out.kind == outJSON {
		if err := writeJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		printReport(e, rep)
	}
	if !rep.OK() {
		return runEnded{}
	}
	return nil
}

func (c *verifyCmd) keys(e *env) (map[string]ed25519.PublicKey, error) {
	if c.Keys != "" {
		data, err := os.ReadFile(c.Keys)
		if err != nil {
			return nil, usageError{err.Error()}
		}
		keys, err := verify.ParseKeys(data)
		if err != nil {
			return nil, usageError{err.Error()}
		}
		return keys, nil
	}
	cl, err := e.api()
	if err != nil {
		return nil, err
	}
	ctx, cancel := e.call()
	defer cancel()
	resp, err := cl.Accounts.ListSigningKeys(ctx, &pb.ListSigningKeysRequest{})
	if err != nil {
		return nil, err
	}
	data, err := protojson.Marshal(resp)
	if err != nil {
		return nil, err
	}
	return verify.ParseKeys(data)
}

// heads asks the server for the chain head of every schedule found.
func (c *verifyCmd) heads(e *env, rep *verify.Report) (map[string]verify.Head, error) {
	cl, err := e.api()
	if err != nil {
		return nil, err
	}
	out := map[string]verify.Head{}
	for _, ch := range rep.Chains {
		ctx, cancel := e.call()
		resp, err := cl.Schedules.GetSchedule(ctx, &pb.GetScheduleRequest{Id: ch.ScheduleID})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("schedule %s: %w", ch.ScheduleID, err)
		}
		out[ch.ScheduleID] = verify.Head{Length: resp.GetSchedule().GetManifestChainLength(), SHA256: resp.GetSchedule().GetManifestChainHead()}
	}
	return out, nil
}

func printReport(e *env, rep *verify.Report) {
	w := newTabWriter(e.stdout)
	fmt.Fprintf(w, "prefix\t%s\n", rep.Prefix)
	fmt.Fprintf(w, "objects\t%d (%d verified)\n", rep.Objects, rep.Verified)
	fmt.Fprintf(w, "manifests\t%d\n", rep.Manifests)
	for _, ch := range rep.Chains {
		fmt.Fprintf(w, "chain\t%s (%s): manifests #%d..#%d, %d links, %d rows\n", ch.ScheduleID, ch.ScheduleName, ch.First, ch.Last, ch.Links, ch.Rows)
	}
	if len(rep.Unsigned) > 0 {
		fmt.Fprintf(w, "unsigned\t%d objects predate signed manifests (not checked)\n", len(rep.Unsigned))
	}
	_ = w.Flush()
	if rep.OK() {
		fmt.Fprintln(e.stdout, "OK: every object is signed, intact and in its chain")
		return
	}
	fmt.Fprintf(e.stdout, "FAILED: %d findings\n", len(rep.Findings))
	for _, f := range rep.Findings {
		fmt.Fprintln(e.stdout, f.String())
	}
}
