package verify

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azblobsdk "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
	// The storage kinds auditctl verify reads, each with its provider's
	// standard credentials (AWS_* / ~/.aws, GOOGLE_APPLICATION_CREDENTIALS
	// or STORAGE_EMULATOR_HOST, AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY or
	// AZURE_STORAGE_SAS_TOKEN / AZURE_STORAGE_CONNECTION_STRING).
	_ "gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/s3blob"
)

// Open opens the storage a destination URI prefix names and returns the
// prefix inside it:
//
//	s3://bucket/exports/?region=us-east-1[&endpoint=http://127.0.0.1:9000&use_path_style=true]
//	gs://bucket/exports/
//	azblob://container/exports/[?protocol=http&domain=127.0.0.1:10000&localemu=true]
//	file:///var/exports/org/
//
// The query holds the storage library's options (gocloud.dev URL openers);
// credentials come from the environment, never from the URI.
func Open(ctx context.Context, uri string) (*blob.Bucket, string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, "", fmt.Errorf("destination URI %q: %w", uri, err)
	}
	if u.Scheme == "" {
		return nil, "", fmt.Errorf("destination URI %q: no scheme (s3://, gs://, azblob:// or file://)", uri)
	}
	if u.User != nil {
		return nil, "", fmt.Errorf("destination URI %q: credentials do not belong in the URI; use the provider's environment variables", uri)
	}
	if u.Scheme == "file" {
		b, err := blob.OpenBucket(ctx, "file://"+u.Path+"?"+u.RawQuery)
		return b, "", err
	}
	prefix := strings.TrimPrefix(u.Path, "/")
	if u.Scheme == "azblob" && u.Query().Get("protocol") == "http" {
		b, err := openAzureEmulator(ctx, u)
		return b, prefix, err
	}
	root := url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: u.RawQuery}
	b, err := blob.OpenBucket(ctx, root.String())
	return b, prefix, err
}

// openAzureEmulator opens a container of a local Azure emulator (Azurite)
// over plain HTTP with the shared key of AZURE_STORAGE_ACCOUNT and
// AZURE_STORAGE_KEY: the SDK refuses to send a credential over HTTP unless
// told, which is only right for an emulator on this machine.
func openAzureEmulator(ctx context.Context, u *url.URL) (*blob.Bucket, error) {
	domain := u.Query().Get("domain")
	host := domain
	if h, _, err := net.SplitHostPort(domain); err == nil {
		host = h
	}
	if ip := net.ParseIP(host); !(host == "localhost" || ip != nil && ip.IsLoopback()) {
		return nil, fmt.Errorf("azblob over protocol=http only for a local emulator (domain 127.0.0.1:port or localhost:port), not %q", domain)
	}
	account, key := os.Getenv("AZURE_STORAGE_ACCOUNT"), os.Getenv("AZURE_STORAGE_KEY")
	if account == "" || key == "" {
		return nil, errors.New("azblob emulator: set AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY")
	}
	cred, err := azblobsdk.NewSharedKeyCredential(account, key)
	if err != nil {
		return nil, err
	}
	client, err := container.NewClientWithSharedKeyCredential(fmt.Sprintf("http://%s/%s/%s", domain, account, u.Host), cred,
		&container.ClientOptions{ClientOptions: azcore.ClientOptions{InsecureAllowCredentialWithHTTP: true}})
	if err != nil {
		return nil, err
	}
	return azureblob.OpenBucket(ctx, client, nil)
}

// ParseKeys reads public keys from JSON as auditctl and the REST API write
// them: ListSigningKeys' response ({"signingKeys":[{"id","publicKey"}]}),
// or GetStorageIntegrationCredentials' ({"credentials":{"signingKeys":…}}).
func ParseKeys(data []byte) (map[string]ed25519.PublicKey, error) {
	type key struct {
		ID        string `json:"id"`
		PublicKey []byte `json:"publicKey"`
		Algorithm string `json:"algorithm"`
	}
	var doc struct {
		SigningKeys []key `json:"signingKeys"`
		Credentials struct {
			SigningKeys []key `json:"signingKeys"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	keys := append(doc.SigningKeys, doc.Credentials.SigningKeys...)
	out := map[string]ed25519.PublicKey{}
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != "ED25519" {
			return nil, fmt.Errorf("signing key %s: algorithm %q, want ED25519", k.ID, k.Algorithm)
		}
		if len(k.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("signing key %s: %d-byte public key, want %d", k.ID, len(k.PublicKey), ed25519.PublicKeySize)
		}
		out[k.ID] = ed25519.PublicKey(k.PublicKey)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("signing keys: none found (expected the JSON of auditctl signing-keys list -o json)")
	}
	return out, nil
}
