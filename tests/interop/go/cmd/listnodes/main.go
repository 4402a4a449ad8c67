// Command listnodes calls ControlService.ListNodes on a plaintext (loopback, open mode)
// controller with a client generated from protos/ by protoc-gen-go and protoc-gen-go-grpc,
// and prints one node id a line.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	backstopv1 "github.com/backstop/backstop/gen/go/backstop/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7443", "controller HOST:PORT")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of the call")
	flag.Parse()
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := backstopv1.NewControlServiceClient(conn).ListNodes(ctx, &backstopv1.ListNodesRequest{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ListNodes:", err)
		os.Exit(1)
	}
	for _, node := range resp.GetNodes() {
		fmt.Println(node.GetNodeId())
	}
}
