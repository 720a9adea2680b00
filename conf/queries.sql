-- Example queries on the scoring results.
--   spark-submit jobs/sql.py -f conf/queries.sql
-- jobs/sql.py registers the Delta tables (lfr.*) and the view lfr.movie_book_recommendations first.

-- Top books for a movie, by title
SELECT rank, book_title, round(score, 4) AS score, book_id
FROM lfr.movie_book_recommendations
WHERE movie_title = 'Jurassic Park'
ORDER BY rank;

-- Which scoring method and settings produced the current table (one run = one method)
SELECT DISTINCT method, method_params, model_version, lexical_version, run_id, scored_at
FROM lfr.movie_book_recommendations;

-- Top books for a movie, by id (reads one file: the table is clustered by movie_id)
SELECT rank, book_id, score
FROM lfr.recommendations
WHERE movie_id = 'imdb:jurassic-park-1993'
ORDER BY rank;

-- Movies with the strongest best match
SELECT movie_title, book_title, round(score, 4) AS score
FROM lfr.movie_book_recommendations
WHERE rank = 1
ORDER BY score DESC, movie_id
LIMIT 20;

-- Movies whose best match is weakest (little in the book catalog resembles them)
SELECT movie_title, book_title, round(score, 4) AS score
FROM lfr.movie_book_recommendations
WHERE rank = 1
ORDER BY score ASC, movie_id
LIMIT 20;

-- Score distribution by rank: quantiles of the cosine at each rank
SELECT rank, count(*) AS movies, round(min(score), 4) AS min, round(percentile_approx(score, 0.1), 4) AS p10,
       round(percentile_approx(score, 0.5), 4) AS median, round(avg(score), 4) AS mean,
       round(percentile_approx(score, 0.9), 4) AS p90, round(max(score), 4) AS max
FROM lfr.recommendations
GROUP BY rank
ORDER BY rank;

-- Histogram of all recommended scores (buckets of 0.05)
SELECT floor(score * 20) / 20 AS bucket_from, count(*) AS recommendations
FROM lfr.recommendations
GROUP BY 1
ORDER BY 1;

-- Books recommended most often (hubs), with their average rank
SELECT book_title, count(*) AS movies, round(avg(rank), 2) AS avg_rank, round(avg(score), 4) AS avg_score
FROM lfr.movie_book_recommendations
GROUP BY book_id, book_title
ORDER BY movies DESC, book_id
LIMIT 20;

-- Catalog coverage: share of books recommended to at least one movie
SELECT count(DISTINCT r.book_id) AS books_recommended, (SELECT count(*) FROM lfr.book_embeddings) AS books,
       round(count(DISTINCT r.book_id) / (SELECT count(*) FROM lfr.book_embeddings), 4) AS coverage
FROM lfr.recommendations r;

-- Sanity check: movies whose top-k contains a book of the same title (likely adaptations)
SELECT movie_title, rank, book_title, round(score, 4) AS score
FROM lfr.movie_book_recommendations
WHERE lower(book_title) LIKE concat(lower(movie_title), '%')
ORDER BY rank, movie_title
LIMIT 20;

-- The run behind the table: model version, run id, time, size
SELECT model_version, run_id, min(scored_at) AS scored_at, count(DISTINCT movie_id) AS movies,
       max(rank) AS k, count(*) AS rows
FROM lfr.recommendations
GROUP BY model_version, run_id;

-- One atomic Delta commit per scoring run (earlier runs: SELECT ... FROM lfr.recommendations VERSION AS OF n)
DESCRIBE HISTORY lfr.recommendations LIMIT 5;
