-- Per show and UTC day: Spotify plays, all-platform plays + downloads (Spotify's GraphQL
-- backend: spotify.show_daily_totals; NULL where it is not stored) and OP3 downloads side
-- by side, with trailing 7- and 28-day averages.
-- A source counts only on the days it covers (its first to its last stored day); a trailing
-- average is NULL unless every day of its window has a number.
WITH sp AS (
    SELECT s.show_id, p.date AS day, sum(p.plays) AS plays
    FROM anchor.plays p JOIN analytics.shows s ON s.anchor_show_id = p.show_id
    GROUP BY ALL
),
ap AS (
    SELECT s.show_id, t.partition_date AS day, sum(t.plays_and_downloads) AS plays_and_downloads
    FROM spotify.show_daily_totals t JOIN analytics.shows s ON s.anchor_show_id = t.show_id
    GROUP BY ALL
),
ap_cov AS (
    SELECT s.show_id, min(t.partition_date) AS lo, max(t.partition_date) AS hi
    FROM spotify.show_daily_totals t JOIN analytics.shows s ON s.anchor_show_id = t.show_id
    GROUP BY ALL
),
op AS (
    SELECT s.show_id, d.date AS day, count(*) AS downloads
    FROM op3.downloads d JOIN analytics.shows s ON s.op3_show_id = d.show_id
    GROUP BY ALL
),
sp_cov AS (
    SELECT s.show_id, min(p.partition_date) AS lo, max(p.partition_date) AS hi
    FROM anchor.plays p JOIN analytics.shows s ON s.anchor_show_id = p.show_id
    GROUP BY ALL
),
op_cov AS (
    SELECT s.show_id, min(d.partition_date) AS lo, max(d.partition_date) AS hi
    FROM op3.downloads d JOIN analytics.shows s ON s.op3_show_id = d.show_id
    GROUP BY ALL
),
days AS (
    SELECT show_id, CAST(unnest(generate_series(min(lo), max(hi), INTERVAL 1 DAY)) AS DATE) AS day
    FROM (SELECT * FROM sp_cov UNION ALL SELECT * FROM op_cov)
    GROUP BY show_id
),
grid AS (
    SELECT d.show_id, d.day,
           CASE WHEN d.day BETWEEN sc.lo AND sc.hi THEN sp.plays END AS spotify_plays,
           CASE WHEN d.day BETWEEN ac.lo AND ac.hi THEN ap.plays_and_downloads END
               AS all_platform_plays_and_downloads,
           CASE WHEN d.day BETWEEN oc.lo AND oc.hi THEN coalesce(op.downloads, 0) END
               AS op3_downloads
    FROM days d
    LEFT JOIN sp_cov sc ON sc.show_id = d.show_id
    LEFT JOIN op_cov oc ON oc.show_id = d.show_id
    LEFT JOIN ap_cov ac ON ac.show_id = d.show_id
    LEFT JOIN sp ON sp.show_id = d.show_id AND sp.day = d.day
    LEFT JOIN ap ON ap.show_id = d.show_id AND ap.day = d.day
    LEFT JOIN op ON op.show_id = d.show_id AND op.day = d.day
)
SELECT show_id, day, spotify_plays, all_platform_plays_and_downloads, op3_downloads,
       CASE WHEN count(spotify_plays) OVER w7 = 7 THEN avg(spotify_plays) OVER w7 END
           AS spotify_plays_avg_7d,
       CASE WHEN count(spotify_plays) OVER w28 = 28 THEN avg(spotify_plays) OVER w28 END
           AS spotify_plays_avg_28d,
       CASE WHEN count(all_platform_plays_and_downloads) OVER w7 = 7
            THEN avg(all_platform_plays_and_downloads) OVER w7 END
           AS all_platform_plays_and_downloads_avg_7d,
       CASE WHEN count(all_platform_plays_and_downloads) OVER w28 = 28
            THEN avg(all_platform_plays_and_downloads) OVER w28 END
           AS all_platform_plays_and_downloads_avg_28d,
       CASE WHEN count(op3_downloads) OVER w7 = 7 THEN avg(op3_downloads) OVER w7 END
           AS op3_downloads_avg_7d,
       CASE WHEN count(op3_downloads) OVER w28 = 28 THEN avg(op3_downloads) OVER w28 END
           AS op3_downloads_avg_28d
FROM grid
WINDOW w7 AS (PARTITION BY show_id ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW),
       w28 AS (PARTITION BY show_id ORDER BY day ROWS BETWEEN 27 PRECEDING AND CURRENT ROW)
ORDER BY show_id, day
