-- Per episode: its release day and its Spotify plays and OP3 downloads in its first 1, 7, 30
-- and 90 days (day 1 = the release day, UTC), with its rank among the show's episodes at
-- each horizon. A horizon counts only when the stored data covers every one of its days
-- (*_days_covered = consecutive days from the release day a source holds); else NULL.
WITH eps AS (
    SELECT * FROM analytics.episode_map WHERE release_date IS NOT NULL
),
sp_cov AS (
    SELECT show_id, min(partition_date) AS lo, max(partition_date) AS hi
    FROM anchor.episode_plays GROUP BY ALL
),
op_cov AS (
    SELECT show_id, min(partition_date) AS lo, max(partition_date) AS hi
    FROM op3.downloads GROUP BY ALL
),
sp AS (
    SELECT e.anchor_show_id, e.spotify_episode_id,
           sum(p.plays) FILTER (WHERE p.date < e.release_date + 1) AS d1,
           sum(p.plays) FILTER (WHERE p.date < e.release_date + 7) AS d7,
           sum(p.plays) FILTER (WHERE p.date < e.release_date + 30) AS d30,
           sum(p.plays) FILTER (WHERE p.date < e.release_date + 90) AS d90
    FROM eps e JOIN anchor.episode_plays p
        ON p.show_id = e.anchor_show_id AND p.episode_id = e.spotify_episode_id
       AND p.date >= e.release_date
    GROUP BY ALL
),
op AS (
    SELECT e.op3_show_id, e.op3_episode_id,
           count(*) FILTER (WHERE d.date < e.release_date + 1) AS d1,
           count(*) FILTER (WHERE d.date < e.release_date + 7) AS d7,
           count(*) FILTER (WHERE d.date < e.release_date + 30) AS d30,
           count(*) FILTER (WHERE d.date < e.release_date + 90) AS d90
    FROM eps e JOIN op3.downloads d
        ON d.show_id = e.op3_show_id AND d.episode_id = e.op3_episode_id
       AND d.date >= e.release_date
    GROUP BY ALL
),
counts AS (
    SELECT e.show_id, e.title, e.release_date, e.spotify_episode_id, e.op3_episode_id,
           CASE WHEN e.spotify_episode_id IS NULL THEN NULL
                WHEN sc.lo IS NULL OR e.release_date < sc.lo THEN 0
                ELSE greatest(0, sc.hi - e.release_date + 1) END AS spotify_days_covered,
           CASE WHEN e.op3_episode_id IS NULL THEN NULL
                WHEN oc.lo IS NULL OR e.release_date < oc.lo THEN 0
                ELSE greatest(0, oc.hi - e.release_date + 1) END AS op3_days_covered,
           sp.d1 AS sp1, sp.d7 AS sp7, sp.d30 AS sp30, sp.d90 AS sp90,
           op.d1 AS op1, op.d7 AS op7, op.d30 AS op30, op.d90 AS op90
    FROM eps e
    LEFT JOIN sp_cov sc ON sc.show_id = e.anchor_show_id
    LEFT JOIN op_cov oc ON oc.show_id = e.op3_show_id
    LEFT JOIN sp ON sp.anchor_show_id = e.anchor_show_id
                AND sp.spotify_episode_id = e.spotify_episode_id
    LEFT JOIN op ON op.op3_show_id = e.op3_show_id AND op.op3_episode_id = e.op3_episode_id
),
horizons AS (
    SELECT show_id, title, release_date, spotify_episode_id, op3_episode_id,
           spotify_days_covered, op3_days_covered,
           CASE WHEN spotify_days_covered >= 1 THEN coalesce(sp1, 0) END AS spotify_plays_1d,
           CASE WHEN spotify_days_covered >= 7 THEN coalesce(sp7, 0) END AS spotify_plays_7d,
           CASE WHEN spotify_days_covered >= 30 THEN coalesce(sp30, 0) END AS spotify_plays_30d,
           CASE WHEN spotify_days_covered >= 90 THEN coalesce(sp90, 0) END AS spotify_plays_90d,
           CASE WHEN op3_days_covered >= 1 THEN coalesce(op1, 0) END AS op3_downloads_1d,
           CASE WHEN op3_days_covered >= 7 THEN coalesce(op7, 0) END AS op3_downloads_7d,
           CASE WHEN op3_days_covered >= 30 THEN coalesce(op30, 0) END AS op3_downloads_30d,
           CASE WHEN op3_days_covered >= 90 THEN coalesce(op90, 0) END AS op3_downloads_90d
    FROM counts
)
SELECT *,
       CASE WHEN spotify_plays_1d IS NOT NULL THEN rank() OVER (
           PARTITION BY show_id, spotify_plays_1d IS NULL ORDER BY spotify_plays_1d DESC) END
           AS spotify_rank_1d,
       CASE WHEN spotify_plays_7d IS NOT NULL THEN rank() OVER (
           PARTITION BY show_id, spotify_plays_7d IS NULL ORDER BY spotify_plays_7d DESC) END
           AS spotify_rank_7d,
       CASE WHEN spotify_plays_30d IS NOT NULL THEN rank() OVER (
           PARTITION BY show_id, spotify_plays_30d IS NULL ORDER BY spotify_plays_30d DESC) END
           AS spotify_rank_30d,
       CASE WHEN spotify_plays_90d IS NOT NULL THEN rank() OVER (
           PARTITION BY show_id, spotify_plays_90d IS NULL ORDER BY spotify_plays_90d DESC) END
           AS spotify_rank_90d,
       CASE WHEN op3_downloads_1d IS NOT NULL THEN rank() OVER (
           PARTITION BY show_id, op3_downloads_1d IS NULL ORDER BY op3_downloads_1d DESC) END
           AS op3_rank_1d,
       CASE WHEN op3_downloads_7d IS NOT NULL THEN rank() OVER (
           PARTITION BY show_id, op3_downloads_7d IS NULL ORDER BY op3_downloads_7d DESC) END
           AS op3_rank_7d,
       CASE WHEN op3_downloads_30d IS NOT NULL THEN rank() OVER (
           PARTITION BY show_id, op3_downloads_30d IS NULL ORDER BY op3_downloads_30d DESC) END
           AS op3_rank_30d,
       CASE WHEN op3_downloads_90d IS NOT NULL THEN rank() OVER (
           PARTITION BY show_id, op3_downloads_90d IS NULL ORDER BY op3_downloads_90d DESC) END
           AS op3_rank_90d
FROM horizons
ORDER BY show_id, release_date DESC, title
