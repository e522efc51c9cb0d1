package catalog

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // pure-Go SQLite driver "sqlite"
)

// Product is one catalog entry: the row in SQLite, the cached value and the
// API's JSON.
type Product struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Stock      int64  `json:"stock"`
	UpdatedAt  string `json:"updated_at"`
}

// ErrNotFound says no product has the id.
var ErrNotFound = errors.New("catalog: no such product")

// Store is the source of truth: a SQLite database, shared by the replicas.
type Store struct{ db *sql.DB }

// OpenStore opens (and creates if needed) the database at path. WAL and a
// busy timeout let several processes share the file.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS products (
		id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL,
		stock INTEGER NOT NULL, updated_at TEXT NOT NULL)`); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Get reads one product.
func (s *Store) Get(ctx context.Context, id int64) (Product, error) {
	var p Product
	err := s.db.QueryRowContext(ctx, `SELECT id, name, price_cents, stock, updated_at FROM products WHERE id = ?`, id).
		Scan(&p.ID, &p.Name, &p.PriceCents, &p.Stock, &p.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Product{}, ErrNotFound
	}
	return p, err
}

// GetMany reads the products that exist among ids.
func (s *Store) GetMany(ctx context.Context, ids []int64) ([]Product, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, price_cents, stock, updated_at FROM products WHERE id IN (?`+
		strings.Repeat(",?", len(ids)-1)+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Product
	for rows.Next() {
		var p Product
		if err := rows.Scan(&p.ID, &p.Name, &p.PriceCents, &p.Stock, &p.UpdatedAt); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Put inserts or replaces p, stamping UpdatedAt, and returns what it stored.
func (s *Store) Put(ctx context.Context, p Product) (Product, error) {
	p.UpdatedAt = time.Now().UTC().Format(time.RFC3339Nano)
	_, err := s.db.ExecContext(ctx, `INSERT INTO products (id, name, price_cents, stock, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents,
		stock = excluded.stock, updated_at = excluded.updated_at`, p.ID, p.Name, p.PriceCents, p.Stock, p.UpdatedAt)
	return p, err
}

// Delete removes a product; deleting a missing one is not an error.
func (s *Store) Delete(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM products WHERE id = ?`, id)
	return err
}

// Seed fills the table with n products (ids 1..n) in one transaction.
func (s *Store) Seed(ctx context.Context, n int) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i := 1; i <= n; i++ {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO products VALUES (?, ?, ?, ?, ?)`,
			i, "product "+strconv.Itoa(i), 100+i*7%5000, i%100, now); err != nil {
			return err
		}
	}
	return tx.Commit()
}
