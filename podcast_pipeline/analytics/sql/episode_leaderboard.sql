-- Per episode: title, release day, Spotify plays to date (lifetime, latest snapshot) and OP3
-- downloads stored so far (since op3_counted_since), ranked per show; how far people listen
-- (Spotify's share still listening at 25/50/75/100 % of the episode, average and median
-- listen seconds); and its ids at both sources with the rule that matched them.
WITH tp AS (
    SELECT show_id, episode_id, plays FROM anchor.total_plays_by_episode
    QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id)
),
eps AS (
    SELECT show_id, episode_id, duration_ms, total_plays FROM anchor.episodes
    QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id)
),
agg AS (
    SELECT show_id, episode_id,
           max(value) FILTER (WHERE metric = 'percentile25') AS p25,
           max(value) FILTER (WHERE metric = 'percentile50') AS p50,
           max(value) FILTER (WHERE metric = 'percentile75') AS p75,
           max(value) FILTER (WHERE metric = 'percentile100') AS p100,
           max(value) FILTER (WHERE metric = 'averageListenSeconds') AS avg_seconds
    FROM (SELECT * FROM anchor.episode_aggregated_performance
          QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id))
    GROUP BY ALL
),
perf AS (
    SELECT * FROM anchor.episode_performance
    QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id)
),
starters AS (
    SELECT show_id, episode_id, max(listeners) FILTER (WHERE sample_second = 0) AS n,
           max(sample_second) AS last_second
    FROM perf GROUP BY ALL
),
median AS (
    -- The second at which half of those who started had stopped; the whole curve when
    -- more than half were still listening at its end.
    SELECT s.show_id, s.episode_id,
           coalesce(min(p.sample_second) FILTER (WHERE p.listeners * 2 <= s.n),
                    any_value(s.last_second) + 1) AS seconds
    FROM starters s JOIN perf p USING (show_id, episode_id)
    WHERE s.n > 0
    GROUP BY ALL
),
op AS (
    SELECT show_id, episode_id, count(*) AS downloads FROM op3.downloads GROUP BY ALL
),
op_cov AS (SELECT show_id, min(partition_date) AS lo FROM op3.downloads GROUP BY ALL),
board AS (
    SELECT e.show_id, e.title, e.release_date,
           coalesce(tp.plays, eps.total_plays) AS spotify_plays,
           CASE WHEN e.op3_episode_id IS NOT NULL AND oc.lo IS NOT NULL
                THEN coalesce(op.downloads, 0) END AS op3_downloads,
           CASE WHEN e.op3_episode_id IS NOT NULL THEN oc.lo END AS op3_counted_since,
           round(eps.duration_ms / 1000.0) AS duration_seconds,
           agg.p25 AS still_listening_at_25pct, agg.p50 AS still_listening_at_50pct,
           agg.p75 AS still_listening_at_75pct, agg.p100 AS still_listening_at_100pct,
           agg.avg_seconds AS average_listen_seconds, median.seconds AS median_listen_seconds,
           e.spotify_episode_id, e.web_episode_id, e.spotify_episode_uri, e.op3_episode_id,
           e.match_rule
    FROM analytics.episode_map e
    LEFT JOIN tp ON tp.show_id = e.anchor_show_id AND tp.episode_id = e.spotify_episode_id
    LEFT JOIN eps ON eps.show_id = e.anchor_show_id AND eps.episode_id = e.spotify_episode_id
    LEFT JOIN agg ON agg.show_id = e.anchor_show_id AND agg.episode_id = e.spotify_episode_id
    LEFT JOIN median ON median.show_id = e.anchor_show_id
                    AND median.episode_id = e.spotify_episode_id
    LEFT JOIN op ON op.show_id = e.op3_show_id AND op.episode_id = e.op3_episode_id
    LEFT JOIN op_cov oc ON oc.show_id = e.op3_show_id
)
SELECT show_id,
       CASE WHEN spotify_plays IS NOT NULL THEN rank() OVER (
           PARTITION BY show_id, spotify_plays IS NULL ORDER BY spotify_plays DESC) END
           AS spotify_rank,
       CASE WHEN op3_downloads IS NOT NULL THEN rank() OVER (
           PARTITION BY show_id, op3_downloads IS NULL ORDER BY op3_downloads DESC) END
           AS op3_rank,
       * EXCLUDE (show_id)
FROM board
ORDER BY show_id, spotify_rank NULLS LAST, op3_rank NULLS LAST, title
