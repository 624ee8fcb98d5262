package testenv

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
)

// Azurite's fixed development account and its well-known (public) key.
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azure is an Azurite blob service on 127.0.0.1.
type Azure struct {
	Endpoint string // http://127.0.0.1:<port>/devstoreaccount1 (the service URL)
	Account  string
	Key      string
}

// StartAzurite starts azurite-blob and stops it when the test ends.
func StartAzurite(t testing.TB) *Azure {
	t.Helper()
	bin := Require(t, ToolAzurite)
	dir := t.TempDir()
	a := &Azure{Account: AzuriteAccount, Key: AzuriteKey}
	args := func(ports []int) []string {
		return []string{
			"--blobHost", "127.0.0.1",
			"--blobPort", fmt.Sprint(ports[0]),
			"--location", dir,
			"--silent",
			"--skipApiVersionCheck", // the Go SDK may send a newer x-ms-version than Azurite knows
			"--loose",
		}
	}
	ready := func(ports []int) func(context.Context) error {
		hp := hostPort(ports[0])
		return func(ctx context.Context) error {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", hp)
			if err != nil {
				return err
			}
			c.Close()
			cl, err := a.serviceClient("http://" + hp + "/" + a.Account)
			if err != nil {
				return err
			}
			pager := cl.NewListContainersPager(nil)
			_, err = pager.NextPage(ctx)
			return err
		}
	}
	_, ports := launch(t, server{name: "azurite-blob", bin: bin, nports: 1, args: args, ready: ready, hardStop: true})
	a.Endpoint = "http://" + hostPort(ports[0]) + "/" + a.Account
	return a
}

func (a *Azure) serviceClient(endpoint string) (*service.Client, error) {
	cred, err := azblob.NewSharedKeyCredential(a.Account, a.Key)
	if err != nil {
		return nil, err
	}
	return service.NewClientWithSharedKeyCredential(endpoint+"/", cred, nil)
}

// ServiceClient returns a shared-key client for the blob service.
func (a *Azure) ServiceClient(t testing.TB) *service.Client {
	t.Helper()
	c, err := a.serviceClient(a.Endpoint)
	if err != nil {
		t.Fatalf("testenv: azure client: %v", err)
	}
	return c
}

// CreateContainer creates a blob container.
func (a *Azure) CreateContainer(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.ServiceClient(t).CreateContainer(ctx, name, nil); err != nil {
		t.Fatalf("testenv: create Azure container %q: %v", name, err)
	}
}
