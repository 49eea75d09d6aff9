from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from services.api.access import requires
from services.api.deps import ReadConnection, SessionDep
from services.api.pagination import Cursor, Limit, cursor_id, page
from services.api.problems import problem_responses
from services.api.rendering import JsonBody
from services.api.routing import ApiRoute
from services.api.schemas.common import MAX_BIGINT, Category, Page
from services.api.schemas.products import ProductCreate, ProductPublic, ProductUpdate
from services.core.api_keys import Scope
from services.core.cache import CachePolicy, cache_policy
from services.core.shop import cache_tags, products

router = APIRouter(prefix="/products", tags=["products"], route_class=ApiRoute)

ProductId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]

_PRODUCT = JsonBody(ProductPublic)
_PRODUCTS = JsonBody(Page[ProductPublic])


# Every list page is also tagged with the products it shows, so a change to one
# product's stock (an order) drops exactly the pages that show it.
def _listed_products(page: Any) -> Iterator[str]:
    return (cache_tags.product(item["id"]) for item in page["items"])


@router.get("", response_model=Page[ProductPublic], responses=problem_responses(422))
@cache_policy(
    CachePolicy(
        ttl_s=60,
        stale_s=30,
        tags=(cache_tags.PRODUCT_LISTS,),
        params=("category", "limit", "cursor"),
        body_tags=_listed_products,
    )
)
async def list_products(
    request: Request,
    category: Annotated[Category | None, Query()] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Response:
    """Products ordered by id, optionally in one category, a page at a time."""
    async with ReadConnection(request) as connection:
        found, last_id = await products.list_products(
            connection, category=category, after_id=cursor_id(cursor), limit=limit
        )
    return _PRODUCTS.response(page(found, last_id))


@router.get("/{product_id}", response_model=ProductPublic, responses=problem_responses(404, 422))
@cache_policy(CachePolicy(ttl_s=60, stale_s=30, tags=(cache_tags.product("{product_id}"),)))
async def get_product(product_id: ProductId, request: Request) -> Response:
    async with ReadConnection(request) as connection:
        product = await products.get_product(connection, product_id)
    return _PRODUCT.response(product)


@router.post("", status_code=201, responses=problem_responses(413, 422))
@requires(Scope.CATALOG_WRITE)
async def create_product(body: ProductCreate, session: SessionDep) -> ProductPublic:
    product = await products.create_product(session, **body.model_dump())
    return ProductPublic.model_validate(product)


@router.patch("/{product_id}", responses=problem_responses(404, 413, 422))
@requires(Scope.CATALOG_WRITE)
async def update_product(
    product_id: ProductId, body: ProductUpdate, session: SessionDep
) -> ProductPublic:
    product = await products.update_product(
        session, product_id, body.model_dump(exclude_unset=True)
    )
    return ProductPublic.model_validate(product)
