"""Named index sets into MediaPipe's 478-point face mesh.

Kept in one place so warps, the inner-mouth painter and the measurements agree on what "the
lower inner lip" or "the left eye" is. Left/right are the subject's, as in MediaPipe.
"""

from __future__ import annotations

LIPS_OUTER = (
    61,
    146,
    91,
    181,
    84,
    17,
    314,
    405,
    321,
    375,
    291,
    409,
    270,
    269,
    267,
    0,
    37,
    39,
    40,
    185,
)
# Inner lip contour split at the corners 78 (subject's right) and 308 (subject's left),
# both running from the right corner to the left corner.
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_OUTER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
MOUTH_CORNERS = (61, 291)
INNER_LIP_MID_UPPER = 13
INNER_LIP_MID_LOWER = 14

RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE_UPPER_LID = (246, 161, 160, 159, 158, 157, 173)
RIGHT_EYE_LOWER_LID = (7, 163, 144, 145, 153, 154, 155)
LEFT_EYE_UPPER_LID = (466, 388, 387, 386, 385, 384, 398)
LEFT_EYE_LOWER_LID = (249, 390, 373, 374, 380, 381, 382)
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
RIGHT_EYE_TOP_BOTTOM = (159, 145)
LEFT_EYE_TOP_BOTTOM = (386, 374)

RIGHT_BROW = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55)
LEFT_BROW = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)
RIGHT_BROW_INNER = 55
LEFT_BROW_INNER = 285

FACE_OVAL = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
)
FOREHEAD_TOP = 10
CHIN = 152
NOSE_TIP = 1
RIGHT_CHEEK = 234
LEFT_CHEEK = 454
