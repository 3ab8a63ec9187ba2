"""trigram GiST indexes on store, owner and product names, for nearest-name lookups

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

The store resolver's fuzzy step asks for the few visible stores whose name (or owner's name) is
nearest to what was typed. The GIN trigram indexes answer "which names share enough
trigrams", which for a name made of common words ("Fresh Medicos", "Super Bazaar") is thousands
of stores, each then re-checked; a GiST trigram index returns names in order of distance
(`<->`, `<<->`), so a nearest-first scan stops after a handful. Signatures of 256 bytes
(the default is 12) keep names of many trigrams apart: at 10,000 stores a rep's nearest-name
scan took 2.9-4.0 ms against 4.5-6.5 ms with the default. Products get the same, and an
index on the lower-cased name for the resolver's exact-name step (as stores have).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_stores_name_gist",
        "stores",
        ["name"],
        postgresql_using="gist",
        postgresql_ops={"name": "gist_trgm_ops(siglen=256)"},
    )
    op.create_index(
        "ix_stores_owner_gist",
        "stores",
        ["owner_name"],
        postgresql_using="gist",
        postgresql_ops={"owner_name": "gist_trgm_ops(siglen=256)"},
    )


    op.create_index(
        "ix_products_name_gist",
        "products",
        ["name"],
        postgresql_using="gist",
        postgresql_ops={"name": "gist_trgm_ops(siglen=256)"},
    )
    op.create_index("ix_products_name_lower", "products", [sa.text("lower(name)")])


def downgrade() -> None:
    op.drop_index("ix_products_name_lower", table_name="products")
    op.drop_index("ix_products_name_gist", table_name="products")
    op.drop_index("ix_stores_owner_gist", table_name="stores")
    op.drop_index("ix_stores_name_gist", table_name="stores")
