-- Which Spotify for Creators episode is which OP3 episode: one row per episode known to
-- either side. Rules, tried in this order, each only between episodes still unmatched and
-- only where it pairs exactly one episode with exactly one other:
--   audio_url     the OP3 item guid appears in the Spotify audio URL, or an OP3 download
--                 URL (URL-decoded) ends with that audio URL;
--   title         the titles are equal ignoring case and repeated spaces;
--   publish_time  the publish times are at most 15 minutes apart.
-- Drafts (no publish time) are left out. match_rule NULL = unmatched (one side only).
-- An Anchor show and the OP3 show that most of its matched episodes belong to are one show,
-- named by its Anchor id; matches across shows that are not linked so are dropped.
WITH anchor_eps AS (
    SELECT e.show_id, e.episode_id, e.web_episode_id, e.title, e.publish_on,
           e.spotify_episode_uri,
           coalesce(m.audio_url,
                    nullif(url_decode(regexp_extract(e.download_url, '[?&]url=([^&]+)', 1)), ''))
               AS audio_url,
           lower(trim(regexp_replace(e.title, '\s+', ' ', 'g'))) AS norm_title
    FROM anchor.episodes e
    LEFT JOIN (SELECT * FROM anchor.episode_metadata
               QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id)) m
        ON m.show_id = e.show_id AND m.episode_id = e.episode_id
    WHERE e.publish_on IS NOT NULL
    QUALIFY e.partition_date = max(e.partition_date) OVER (PARTITION BY e.show_id)
),
op3_eps AS (
    SELECT show_id, episode_id, episode_title AS title, pubdate, item_guid, show_title,
           lower(trim(regexp_replace(episode_title, '\s+', ' ', 'g'))) AS norm_title
    FROM op3.show
    WHERE episode_id IS NOT NULL
    QUALIFY partition_date = max(partition_date) OVER (PARTITION BY show_id)
),
op3_urls AS (
    SELECT DISTINCT show_id, episode_id, url_decode(url) AS url
    FROM op3.downloads
    WHERE episode_id IS NOT NULL AND episode_id <> '' AND url IS NOT NULL
),
pairs AS (
    SELECT a.show_id AS a_show, a.episode_id AS a_id, o.show_id AS o_show, o.episode_id AS o_id,
           1 AS rule
    FROM anchor_eps a JOIN op3_eps o
        ON o.item_guid IS NOT NULL AND o.item_guid <> '' AND strpos(a.audio_url, o.item_guid) > 0
    UNION
    SELECT a.show_id, a.episode_id, u.show_id, u.episode_id, 1
    FROM anchor_eps a JOIN op3_urls u
        ON a.audio_url IS NOT NULL
       AND ends_with(u.url, regexp_replace(a.audio_url, '^[a-z]+://', ''))
    UNION
    SELECT a.show_id, a.episode_id, o.show_id, o.episode_id, 2
    FROM anchor_eps a JOIN op3_eps o ON a.norm_title = o.norm_title
    UNION
    SELECT a.show_id, a.episode_id, o.show_id, o.episode_id, 3
    FROM anchor_eps a JOIN op3_eps o
        ON o.pubdate BETWEEN a.publish_on - INTERVAL 15 MINUTE AND a.publish_on + INTERVAL 15 MINUTE
),
r1 AS (
    SELECT * FROM pairs WHERE rule = 1
    QUALIFY count(*) OVER (PARTITION BY a_show, a_id) = 1
        AND count(*) OVER (PARTITION BY o_show, o_id) = 1
),
r2 AS (
    SELECT * FROM pairs p WHERE rule = 2
      AND NOT EXISTS (SELECT 1 FROM r1 WHERE (r1.a_show = p.a_show AND r1.a_id = p.a_id)
                                         OR (r1.o_show = p.o_show AND r1.o_id = p.o_id))
    QUALIFY count(*) OVER (PARTITION BY a_show, a_id) = 1
        AND count(*) OVER (PARTITION BY o_show, o_id) = 1
),
r12 AS (SELECT * FROM r1 UNION ALL SELECT * FROM r2),
r3 AS (
    SELECT * FROM pairs p WHERE rule = 3
      AND NOT EXISTS (SELECT 1 FROM r12 WHERE (r12.a_show = p.a_show AND r12.a_id = p.a_id)
                                          OR (r12.o_show = p.o_show AND r12.o_id = p.o_id))
    QUALIFY count(*) OVER (PARTITION BY a_show, a_id) = 1
        AND count(*) OVER (PARTITION BY o_show, o_id) = 1
),
matched AS (SELECT * FROM r12 UNION ALL SELECT * FROM r3),
links AS (
    SELECT a_show, o_show
    FROM (SELECT a_show, o_show, count(*) AS n FROM matched GROUP BY ALL)
    QUALIFY row_number() OVER (PARTITION BY a_show ORDER BY n DESC, o_show) = 1
        AND row_number() OVER (PARTITION BY o_show ORDER BY n DESC, a_show) = 1
),
kept AS (SELECT m.* FROM matched m JOIN links l USING (a_show, o_show)),
titles AS (SELECT show_id, max(show_title) AS show_title FROM op3_eps GROUP BY ALL)
SELECT
    coalesce(a.show_id, lo.a_show, o.show_id) AS show_id,
    coalesce(a.show_id, lo.a_show) AS anchor_show_id,
    coalesce(o.show_id, la.o_show) AS op3_show_id,
    t.show_title,
    a.episode_id AS spotify_episode_id,
    a.web_episode_id,
    a.spotify_episode_uri,
    o.episode_id AS op3_episode_id,
    o.item_guid AS op3_item_guid,
    coalesce(a.title, o.title) AS title,
    a.title AS spotify_title,
    o.title AS op3_title,
    a.publish_on AS spotify_published_at,
    o.pubdate AS op3_published_at,
    CAST(timezone('UTC', coalesce(a.publish_on, o.pubdate)) AS DATE) AS release_date,
    a.audio_url,
    CASE k.rule WHEN 1 THEN 'audio_url' WHEN 2 THEN 'title' WHEN 3 THEN 'publish_time' END
        AS match_rule
FROM anchor_eps a
LEFT JOIN kept k ON k.a_show = a.show_id AND k.a_id = a.episode_id
FULL OUTER JOIN op3_eps o ON o.show_id = k.o_show AND o.episode_id = k.o_id
LEFT JOIN links la ON la.a_show = a.show_id
LEFT JOIN links lo ON lo.o_show = o.show_id
LEFT JOIN titles t ON t.show_id = coalesce(o.show_id, la.o_show)
ORDER BY show_id, release_date DESC NULLS LAST, title
