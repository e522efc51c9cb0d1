// Package catalog is an example service: a small JSON API over a SQLite
// product table, with tieredcache in front of it.
//
//	GET    /products/{id}        cache-aside read (GetOrLoad)
//	GET    /products?ids=1,2,3   list (GetMany: L1, then one BatchGetItem, then one SQL query)
//	PUT    /products/{id}        write the database, then the cache (Set)
//	DELETE /products/{id}        delete in the database, then in the cache (Delete)
//	GET    /stats                the cache's hit and miss counts
//	GET    /healthz              liveness
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/tieredcache/tieredcache/tiered"
)

// MaxListIDs bounds one list request.
const MaxListIDs = 100

// Server serves the API.
type Server struct {
	store *Store
	cache *tiered.Cache[Product]
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewServer returns the API over store and cache.
func NewServer(store *Store, cache *tiered.Cache[Product], log *slog.Logger) *Server {
	s := &Server{store: store, cache: cache, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /products/{id}", s.get)
	s.mux.HandleFunc("GET /products", s.list)
	s.mux.HandleFunc("PUT /products/{id}", s.put)
	s.mux.HandleFunc("DELETE /products/{id}", s.delete)
	s.mux.HandleFunc("GET /stats", s.stats)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func key(id int64) string { return strconv.FormatInt(id, 10) }

// load is the cache's loader: the database, with "no row" as the cache's
// not-found (cached for NegativeTTL, so a flood of requests for a missing id
// does not reach SQLite).
func (s *Server) load(ctx context.Context, k string) (Product, error) {
	id, err := strconv.ParseInt(k, 10, 64)
	if err != nil {
		return Product{}, tiered.ErrNotFound
	}
	p, err := s.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Product{}, tiered.ErrNotFound
	}
	return p, err
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	p, err := s.cache.GetOrLoad(r.Context(), key(id), s.load)
	switch {
	case errors.Is(err, tiered.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such product")
	case err != nil:
		s.log.Error("get", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	default:
		writeJSON(w, http.StatusOK, p)
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	var keys []string
	for _, f := range strings.Split(r.URL.Query().Get("ids"), ",") {
		if f == "" {
			continue
		}
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil || id <= 0 {
			writeError(w, http.StatusBadRequest, "ids: positive integers, comma separated")
			return
		}
		keys = append(keys, key(id))
	}
	if len(keys) == 0 || len(keys) > MaxListIDs {
		writeError(w, http.StatusBadRequest, "ids: 1 to 100 ids")
		return
	}
	found, err := s.cache.GetMany(r.Context(), keys, func(ctx context.Context, missing []string) (map[string]Product, error) {
		ids := make([]int64, 0, len(missing))
		for _, k := range missing {
			id, _ := strconv.ParseInt(k, 10, 64)
			ids = append(ids, id)
		}
		ps, err := s.store.GetMany(ctx, ids)
		if err != nil {
			return nil, err
		}
		out := make(map[string]Product, len(ps))
		for _, p := range ps {
			out[key(p.ID)] = p
		}
		return out, nil // ids left out do not exist: cached as not found
	})
	if err != nil {
		s.log.Error("list", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	out := make([]Product, 0, len(found))
	for _, k := range keys { // in the order asked, each once
		if p, ok := found[k]; ok {
			out = append(out, p)
			delete(found, k)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) put(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var p Product
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&p); err != nil || p.Name == "" || p.PriceCents < 0 || p.Stock < 0 {
		writeError(w, http.StatusBadRequest, "body: {name, price_cents >= 0, stock >= 0}")
		return
	}
	p.ID = id
	p, err := s.store.Put(r.Context(), p)
	if err != nil {
		s.log.Error("put", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	// The database has it: now the cache. If DynamoDB cannot take it, the
	// cache keeps retrying the invalidation in the background; the write
	// itself succeeded.
	if err := s.cache.Set(r.Context(), key(id), p); err != nil {
		s.log.Warn("cache set failed; invalidation pending", "err", err)
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if err := s.store.Delete(r.Context(), id); err != nil {
		s.log.Error("delete", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	if err := s.cache.Delete(r.Context(), key(id)); err != nil {
		s.log.Warn("cache delete failed; invalidation pending", "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
}

// Stats is what GET /stats returns.
type Stats struct {
	L1Hits   uint64 `json:"l1_hits"`
	L1Misses uint64 `json:"l1_misses"`
	L2Hits   uint64 `json:"l2_hits"`
	L2Misses uint64 `json:"l2_misses"`
	Loads    uint64 `json:"loads"`
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	st := s.cache.Stats()
	writeJSON(w, http.StatusOK, Stats{L1Hits: st.L1.Hits, L1Misses: st.L1.Misses, L2Hits: st.L2.Hits, L2Misses: st.L2.Misses, Loads: st.Loads.Calls})
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "id: a positive integer")
		return 0, false
	}
	return id, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
