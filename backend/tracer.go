package backend

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolTimings receives how long the HTTP pools took to open a backend
// connection and to hand one to a request; nil functions are skipped.
type PoolTimings struct {
	Connect func(time.Duration)
	Acquire func(time.Duration)
}

// poolTracer times pgx connects and pgxpool acquires for PoolTimings. It
// is the connection's query tracer too (pgxpool finds its acquire tracer
// there), and does nothing per query.
type poolTracer struct{ timings *PoolTimings }

type connectStartKey struct{}
type acquireStartKey struct{}

func (poolTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (poolTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (poolTracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return context.WithValue(ctx, connectStartKey{}, time.Now())
}

func (t poolTracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	if start, ok := ctx.Value(connectStartKey{}).(time.Time); ok && data.Err == nil && t.timings.Connect != nil {
		t.timings.Connect(time.Since(start))
	}
}

func (poolTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return context.WithValue(ctx, acquireStartKey{}, time.Now())
}

func (t poolTracer) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	if start, ok := ctx.Value(acquireStartKey{}).(time.Time); ok && data.Err == nil && t.timings.Acquire != nil {
		t.timings.Acquire(time.Since(start))
	}
}
