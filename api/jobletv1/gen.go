// Package jobletv1 holds the gRPC API of a joblet node. The .pb.go files are
// generated from joblet.proto and committed, so a build needs no protoc.
package jobletv1

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative joblet.proto
