"""The persisted queries the GraphQL backend knows: operation name → (sha256 hash, client).

From the reference client ``spotifygraphqlconnector`` 0.5.3 (Sept 2026). Hashes rotate
with dashboard deploys: a stale one is answered with an error naming the operation
(:class:`~podcast_pipeline.spotify.client.GraphQLError`); the new hash is in the browser's
DevTools → Network → ``graph-pq`` → Payload.
"""
from __future__ import annotations

from typing import NamedTuple

SHELL = "podcasters-shell-app"
PUBLIC = "public-website"
ANALYTICS = "microfrontend-analytics"

class Operation(NamedTuple):
    sha256: str
    client: str  # the x-creator-client header the dashboard sends with it


OPERATIONS: dict[str, Operation] = {
    "getUserMetadata": Operation("f8e54c8841602e6a1712b02776a70c289bc3f1e8661b77c8ddea6e5912ee4287", PUBLIC),
    "WebGetUserShows": Operation("e5b72190d76dacc4d93ac4c01489f33116e7885890c95241f2f3ede11d9eca11", PUBLIC),
    "WebGetUserAndShows": Operation("cf421f56b9ab0910269f4029e7f7fbc5097fb73f7687b7927ffcd5064f2aaf21", SHELL),
    "WebGetUserRegistration": Operation("ce98ffc51a07f15df4dcce6c40ed0dc320471e0f29ef28f7fe651252e191aec2", PUBLIC),
    "WebGetExternalPartnerId": Operation("4f46a6d85e4ff29760dfe7b93050d2fd6dfccb7d5ea45bf718fd1d968dbeb826", SHELL),
    "getShowsForUser": Operation("95c6ed0306a2e7fe00f00563a5a3beb6a58797ddf74da833be0b77c29283be62", ANALYTICS),
    "WebGetShowTypeByUri": Operation("aecbba024ed4d62919387f7d45ae102537a0f8c58e9f6d48503cbfe4b1046247", SHELL),
    "WebGetMonetizationLifecycleState": Operation("707ff5526827a68b07435ea9c39039cf1b6eceb2ff24abc3da432df8cbf09672", SHELL),
    "getShowClips": Operation("e568e6b1bc1844bc27b5e0262947926ed4b2e7a29e6911604e47cf9b8a1e2dbd", PUBLIC),
    "getShowOnSpotifyStats": Operation("9910af3f474a8733f79e04f58ccb81a78c0065737bae17c3ce670f77e1216c37", ANALYTICS),
    "getShowOnSpotifyStatsNRT": Operation("1b45317a124d159de6a8c030d87b2968ced224b301f025268a3783db7d844a18", ANALYTICS),
    "getShowPlaysAndDownloadsByGeo": Operation("16be4b8cea1469e21aa4f82bcd8368b17001129d757f7e3e8121cb4ef7679d83", ANALYTICS),
    "getShowPlaysByGeo": Operation("3015accdc4ec210d01ff9468e4daa8b4c95109488f96a4d2aa4438e01b4e9955", SHELL),
    "getShowPlaysByAge": Operation("98f15a89cb2500253b160b62397617c64b79938ed3f4812eb4d0b605fa2e73d5", ANALYTICS),
    "getShowPlaysByGender": Operation("bf4c1c241e1ba4b321dd1ff5dd228db191639d52e39e551deac625aa49b080b7", ANALYTICS),
    "getShowPlaysAndDownloadsPlatformsStats": Operation("5217e7f68f3496e3c01c316b97aeaca38cc676f9b77e3cbae1445b6a986dd097", ANALYTICS),
    "getShowImpressionsTrendStats": Operation("25ef2a881e05475ba547183a4b971d277f474be95861dc1c24fdc9a13ff6f530", ANALYTICS),
    "getShowAudienceDiscoveryStats": Operation("9bdb7a5a1fa5d456939344b349cdbeca2676321093a8e3059749e952461e1e74", ANALYTICS),
    "getShowImpressionsSourcesStats": Operation("e773c8e6a388a69f29b405d13642187c871127f61ca0520a69087775e2abff42", ANALYTICS),
    "getShowTopEpisodes": Operation("7f0f4dc6869de6c2fa05e08850d87d12b3b3a0fb44792b852bfbc74bad4fcf0e", ANALYTICS),
    "getShowOverviewStatsNRT": Operation("73886721739bbcad6b416a18cfa750250e5039077be0f383a77172f456d0ee39", PUBLIC),
    "getShowAllPlatformsStatsNRT": Operation("a305842e6b2c6ad04a4e568e3bf45b3fcbfe2c85aa484f14a2df94446467492c", ANALYTICS),
    "WebGetIndexedEpisodeList": Operation("da95dd0d5c5e3ffed3150f34f1d9674b6cd3548cdf59a49a37e1a65b325c9e98", PUBLIC),
    "getEpisodePerformanceAllTime": Operation("55201900cdba8c65ac62dfeb48a3ad38a595206e9130e3b56e010ea5add906a0", PUBLIC),
    "getEpisodeMetadataForAnalytics": Operation("9c887e38027a9b121ca64a4600f2ad1b82b74108a0d4cd61bc2372d300f5f800", PUBLIC),
    "getEpisodeStreamsAndDownloads": Operation("b798bdc1367bdbc805b520d0103db981ad9fe7c602eedb187e9434351c969737", PUBLIC),
    "getEpisodePlaysTotal": Operation("c888657ba7e5e9169561123aa5b7b4001110049b17fd9204c11c52f8e28b7e96", PUBLIC),
    "getEpisodePlaysDaily": Operation("7e9550d103f2aa9ebfe564c3389324e991f752ec1ed498923113331ad401c52c", PUBLIC),
    "getEpisodeImpressionsFaceted": Operation("9ca243fbcee851d936f8f7a7a87ed9480a0b600c9c22659fbbde1304fab67881", PUBLIC),
    "getEpisodeConsumptionAllTime": Operation("a57d14960f5c47de98bbbfb72ea30a0de131d3ed97c7464e3537da226ee94a1b", PUBLIC),
    "getEpisodeConsumption": Operation("a0b691d7492605e327d707f18f214d8ea4ec5283a74454524c119763ace4e0c0", PUBLIC),
    "getEpisodeAudienceSizeAllTime": Operation("e5bd6e45a6e52bc91dec6c5e46b4b89a21c0c5095fa14f1202e5a93b076b70ba", PUBLIC),
}
