package main

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/jobid"
	"github.com/ehsaniara/joblet/internal/nodedir"
	"github.com/ehsaniara/joblet/internal/route"
)

// router reaches the fleet's nodes with the selected entry's credentials:
// the node directory is the config entries of that entry's fleet plus
// --nodes (JOBLET_NODES); see internal/route and docs/JOBS.md.
func (a *app) router() (*route.Router, error) {
	if err := a.load(); err != nil {
		return nil, err
	}
	name, _, err := a.cfg.Select(a.nodeName)
	if err != nil {
		return nil, err
	}
	dir, err := nodedir.Load(a.cfg, name, a.nodes)
	if err != nil {
		return nil, err
	}
	return &route.Router{Cfg: a.cfg, Entry: name, Dir: dir, Attempts: a.routeAttempts,
		Learn: func(conn **client.Conn, entry string) client.Learn { return a.learnCRL(conn, entry) }}, nil
}

// reach connects to the node that runs job id (ctx bounds the search).
func (a *app) reach(ctx context.Context, id string) (*client.Conn, error) {
	r, err := a.router()
	if err != nil {
		return nil, err
	}
	n, err := r.Reach(ctx, id)
	if err != nil {
		return nil, err
	}
	return n.Conn, nil
}

// onJob runs one call against the node that runs job id, within the
// per-call deadline (the search included).
func (a *app) onJob(id string, call func(ctx context.Context, conn *client.Conn) error) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	conn, err := a.reach(ctx, id)
	if err != nil {
		return err
	}
	defer conn.Close()
	return notFound(id, call(ctx, conn))
}

// notFound says what a node's NotFound for a job it runs means.
func notFound(id string, err error) error {
	if status.Code(err) != codes.NotFound {
		return err
	}
	node, _ := jobid.Node(id)
	if node == "" {
		return fmt.Errorf("%w (an ID that names no node is asked of the selected node only)", err)
	}
	return fmt.Errorf("%w: node %s no longer has job %s (it keeps its newest jobs.maxKept finished jobs, and none across a restart)", err, node, id)
}

// dialPinned is dial on one TCP connection (client.DialPinned): a call
// after it broke fails, never reaches another node behind a balancer.
func (a *app) dialPinned() (*client.Conn, error) { return a.dialWith(client.DialPinned) }
