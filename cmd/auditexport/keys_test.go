package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/auditexport/auditexport/ent/storageintegration"
	"github.com/auditexport/auditexport/internal/app"
	"github.com/auditexport/auditexport/internal/db"
	"github.com/auditexport/auditexport/internal/secrets"
	"github.com/auditexport/auditexport/internal/tenant"
	"github.com/auditexport/auditexport/internal/testenv"
)

// runCLI runs the command line in-process, as main does.
func runCLI(t *testing.T, args ...string) error {
	t.Helper()
	var c cli
	p, err := kong.New(&c, kong.Name("auditexport"), kong.BindTo(context.Background(), (*context.Context)(nil)))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := p.Parse(args)
	if err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return kctx.Run()
}

func storeIntegrations(t *testing.T, d *db.DB, keys *secrets.Keyring, n int) []string {
	t.Helper()
	ctx := context.Background()
	org, _, err := app.CreateOrg(ctx, d, "keys-"+t.Name(), "admin@example.com")
	if err != nil {
		t.Fatal(err)
	}
	octx := tenant.WithOrg(ctx, org)
	var ids []string
	for i := range n {
		in, err := d.Client.StorageIntegration.Create().SetName("s3_" + string(rune('a'+i))).SetProvider(storageintegration.ProviderS3).
			SetDestination("s3://bucket/p/").SetExternalID("x").SetCreatorID("usr_x").SetCredentialKind("aws_access_key").Save(octx)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := keys.Encrypt([]byte(`{"kind":"aws_access_key","secret_access_key":"s`+in.ID+`"}`), []byte(in.ID))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Client.StorageIntegration.UpdateOneID(in.ID).SetCredentialsCiphertext(ct).Exec(octx); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
	}
	return ids
}

// `keys rotate --new-key` moves every stored credential to a fresh key: the
// rows decrypt with the new key alone afterwards, to the same plaintext,
// and a second rotation touches nothing.
func TestKeysRotate(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "auditexport.db")
	keyFile := filepath.Join(dir, "master.key")
	oldKeys, err := secrets.LoadOrCreate(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := db.Open(context.Background(), "sqlite://"+dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := storeIntegrations(t, d, oldKeys, 3)
	flags := []string{"--data-dir", dir}

	if err := runCLI(t, append([]string{"keys", "rotate", "--new-key"}, flags...)...); err != nil {
		t.Fatalf("keys rotate: %v", err)
	}
	all, err := secrets.Load(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if all.ActiveKeyID() == oldKeys.ActiveKeyID() || len(all.KeyIDs()) != 2 {
		t.Fatalf("key file has %v, want a new active key before %s", all.KeyIDs(), oldKeys.ActiveKeyID())
	}
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode after rotation: %v %v", fi.Mode(), err)
	}
	// Only the new key: proves the rows are no longer under the old one.
	newOnly, err := secrets.ParseKeyring(keyLine(t, keyFile, all.ActiveKeyID()))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := d.Client.StorageIntegration.Query().All(tenant.System(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(ids) {
		t.Fatalf("%d rows, want %d", len(rows), len(ids))
	}
	for _, r := range rows {
		pt, err := newOnly.Decrypt(r.CredentialsCiphertext, []byte(r.ID))
		if err != nil {
			t.Fatalf("%s does not decrypt under the new key alone: %v", r.ID, err)
		}
		if want := `{"kind":"aws_access_key","secret_access_key":"s` + r.ID + `"}`; string(pt) != want {
			t.Fatalf("%s decrypts to %q, want %q", r.ID, pt, want)
		}
	}
	res, err := app.ReencryptCredentials(context.Background(), d, all)
	if err != nil || res.Reencrypted != 0 || res.Total != len(ids) {
		t.Fatalf("second rotation: %+v %v; want 0 of %d touched", res, err, len(ids))
	}
	if err := runCLI(t, append([]string{"keys", "status"}, flags...)...); err != nil {
		t.Fatalf("keys status: %v", err)
	}
}

// A credential under a key the file lacks is reported by id and makes both
// rotate and status fail; the other rows are still rotated.
func TestKeysRotateReportsUnknownKey(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		dir := t.TempDir()
		keyFile := filepath.Join(dir, "master.key")
		lost, err := secrets.LoadOrCreate(filepath.Join(t.TempDir(), "lost.key"))
		if err != nil {
			t.Fatal(err)
		}
		keys, err := secrets.LoadOrCreate(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		good := storeIntegrations(t, d, keys, 1)
		bad := storeIntegrations(t, d, lost, 1)
		if _, err := secrets.AddKey(keyFile); err != nil {
			t.Fatal(err)
		}
		keys, err = secrets.Load(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		res, err := app.ReencryptCredentials(context.Background(), d, keys)
		if err != nil {
			t.Fatal(err)
		}
		if res.Reencrypted != 1 || len(res.Failed) != 1 || res.Failed[0] != bad[0] {
			t.Fatalf("rotation: %+v; want %s re-encrypted and %s failed", res, good[0], bad[0])
		}
		usage, err := app.KeyUsage(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		if usage[keys.ActiveKeyID()] != 1 || usage[lost.ActiveKeyID()] != 1 {
			t.Fatalf("usage %v", usage)
		}
	})
}

func keyLine(t *testing.T, path, kid string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if bytes.HasPrefix(line, []byte(kid+" ")) {
			return line
		}
	}
	t.Fatalf("no line for %s", kid)
	return nil
}

// A database with stored credentials never starts on a generated key: a
// missing key file, or one lacking a key id in use, is refused with the key
// id and the row count; an empty database still gets its key generated.
func TestOpenKeyringRefusesLostKey(t *testing.T) {
	testenv.ForEachDB(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		dir := t.TempDir()
		keyFile := filepath.Join(dir, "master.key")
		if _, err := app.OpenKeyring(ctx, d, keyFile); err != nil {
			t.Fatalf("empty database: %v", err)
		}
		keys, err := secrets.Load(keyFile)
		if err != nil {
			t.Fatalf("no key generated for an empty database: %v", err)
		}
		storeIntegrations(t, d, keys, 2)

		if err := os.Remove(keyFile); err != nil {
			t.Fatal(err)
		}
		_, err = app.OpenKeyring(ctx, d, keyFile)
		if err == nil || !strings.Contains(err.Error(), "2 stored secrets") || !strings.Contains(err.Error(), keys.ActiveKeyID()) {
			t.Fatalf("missing key file: %v; want a refusal naming %s and 2 credentials", err, keys.ActiveKeyID())
		}
		if _, serr := os.Stat(keyFile); !os.IsNotExist(serr) {
			t.Fatalf("a key file was generated although credentials exist: %v", serr)
		}

		other := filepath.Join(t.TempDir(), "other.key")
		if _, err := secrets.LoadOrCreate(other); err != nil {
			t.Fatal(err)
		}
		_, err = app.OpenKeyring(ctx, d, other)
		if err == nil || !strings.Contains(err.Error(), keys.ActiveKeyID()+" (2 credentials)") {
			t.Fatalf("key file without the key id in use: %v", err)
		}
	})
}
