package auditexport_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"os"
	"time"

	auditexport "github.com/auditexport/auditexport/clients/go"
	pb "github.com/auditexport/auditexport/gen/go/auditexport/v1"
)

func ExampleDial() {
	ctx := context.Background()
	c, err := auditexport.Dial(ctx, "auditexport.example.com:443", os.Getenv("AUDITEXPORT_API_KEY"),
		auditexport.WithTLS(&tls.Config{MinVersion: tls.VersionTLS12}),
		auditexport.WithRetry(5, 100*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	me, err := c.Accounts.GetCurrentUser(ctx, &pb.GetCurrentUserRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed in as", me.GetUser().GetEmail())
}

func ExampleClient_SendNow() {
	ctx := context.Background()
	c, err := auditexport.Dial(ctx, "127.0.0.1:9090", os.Getenv("AUDITEXPORT_API_KEY"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	run, err := c.SendNow(ctx, "sch_123", func(p *pb.ExportProgress) {
		fmt.Printf("%s: %d rows, %d bytes\n", p.GetPhase(), p.GetRowsExported(), p.GetBytesUploaded())
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(run.GetState(), run.GetObjectUri())
}
