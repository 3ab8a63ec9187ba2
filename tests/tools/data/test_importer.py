"""`mangalm import`: real export formats in, the right rows out, and nothing half-written.

The fixtures are small CSV files written here in the formats real exports use: a European
Excel export (UTF-8 BOM, semicolons, comma decimals, dd/mm/yyyy, CRLF), a normalised
header+lines pair, a Windows cp1252 customer list.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.cli import app
from tools.data.importer import (
    CsvOptions,
    ImportFailure,
    ImportRequest,
    ImportResult,
    import_file,
    write_rejects_files,
)
from tools.db import make_engine, reset_engine
from tools.models import (
    Communication,
    ImportRun,
    InventoryItem,
    Invoice,
    Order,
    OrderLine,
    Payment,
    Product,
    Store,
    User,
)
from tools.settings import get_settings

EXCEL_EU = CsvOptions(delimiter=";", decimal=",", date_format="%d/%m/%Y")

# A Superstore-like export: order lines with the order header repeated on each row.
SALES_HEADER = (
    "Row ID;Order ID;Order Date;Customer ID;Customer Name;Segment;City;Region;"
    "Product ID;Category;Sub-Category;Product Name;Sales;Quantity;Discount"
)
SALES_ROWS = [
    "1;IN-1001;08/11/2020;C-01;Sharma General;Consumer;Pune;West;"
    "P-TEA;Beverages;Tea;Tata Tea Gold 500g;1.250,00;5;0",
    "2;IN-1001;08/11/2020;C-01;Sharma General;Consumer;Pune;West;"
    "P-BIS;Snacks;Biscuits;Parle-G 800g;96,00;10;0,2",
    "3;IN-1002;15/11/2020;C-02;Gupta Stores;Corporate;Nagpur;Central;"
    "P-TEA;Beverages;Tea;Tata Tea Gold 500g;500,00;2;0",
    # The same product twice in one order happens in real exports.
    "4;IN-1002;15/11/2020;C-02;Gupta Stores;Corporate;Nagpur;Central;"
    "P-TEA;Beverages;Tea;Tata Tea Gold 500g;250,00;1;0",
]
SALES_MAP = {
    "order_id": "Order ID",
    "order_date": "Order Date",
    "store_code": "Customer ID",
    "store_name": "Customer Name",
    "segment": "Segment",
    "city": "City",
    "region": "Region",
    "sku": "Product ID",
    "product_name": "Product Name",
    "category": "Category",
    "attr.sub_category": "Sub-Category",
    "amount": "Sales",
    "quantity": "Quantity",
    "discount": "Discount",
}


def write_csv(
    path: Path, header: str, rows: list[str], *, encoding: str = "utf-8-sig", eol: str = "\r\n"
) -> Path:
    path.write_bytes(eol.join([header, *rows, ""]).encode(encoding))
    return path


def sales_file(tmp_path: Path, rows: list[str] | None = None) -> Path:
    return write_csv(tmp_path / "sales.csv", SALES_HEADER, SALES_ROWS if rows is None else rows)


def run_import(
    db: Session, entity: str, path: Path, mapping: dict[str, str], **kw: object
) -> ImportResult:
    return import_file(db, ImportRequest(entity=entity, path=path, mapping=mapping, **kw))  # type: ignore[arg-type]


def count(db: Session, model: type) -> int:
    return db.scalar(select(func.count()).select_from(model)) or 0


def counts(db: Session) -> dict[str, int]:
    return {m.__tablename__: count(db, m) for m in (Store, Product, Order, OrderLine)}


def reasons(result: ImportResult) -> dict[int, str]:
    return {r.line: r.reason for r in result.rejects}


# --- orders -----------------------------------------------------------------------------------


def test_flat_order_lines_in_european_excel_format(db: Session, tmp_path: Path) -> None:
    result = run_import(db, "orders", sales_file(tmp_path), SALES_MAP, options=EXCEL_EU)

    assert result.rejects == [] and result.written
    assert (result.rows_read, result.inserted) == (4, 4)
    assert dict(result.created) == {"stores": 2, "products": 2, "orders": 2, "order lines": 4}
    order = db.scalars(select(Order).where(Order.external_id == "IN-1001")).one()
    assert order.order_date == dt.date(2020, 11, 8)  # dd/mm, not mm/dd
    assert (order.status, order.source_channel) == ("delivered", "import")
    assert order.store.code == "C-01" and order.store.name == "Sharma General"
    assert (order.store.city, order.store.region, order.store.segment) == (
        "Pune",
        "West",
        "Consumer",
    )
    # "1.250,00" is twelve hundred and fifty; the total is the sum of the lines.
    assert [line.amount for line in order.lines] == [Decimal("1250.00"), Decimal("96.00")]
    assert order.total_amount == Decimal("1346.00")
    # With an amount (sales) column the unit price is derived: 96 / (10 x 0.8) = 12.
    biscuits = order.lines[1]
    assert (biscuits.quantity, biscuits.discount, biscuits.unit_price) == (
        10,
        Decimal("0.2000"),
        Decimal("12.00"),
    )
    product = biscuits.product
    assert (product.name, product.category) == ("Parle-G 800g", "Snacks")
    assert product.attributes == {"sub_category": "Biscuits"}
    # A product repeated within one order keeps both lines.
    repeat = db.scalars(select(Order).where(Order.external_id == "IN-1002")).one()
    assert [line.line_no for line in repeat.lines] == [1, 2]
    assert repeat.total_amount == Decimal("750.00")
    # The analytics rollup sees the new orders.
    rollup = db.execute(
        text("SELECT sum(amount) FROM sales_daily WHERE store_id = :s"), {"s": repeat.store_id}
    )
    assert rollup.scalar() == Decimal("750.00")


def test_unit_price_times_quantity_less_discount_when_no_amount(
    db: Session, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "lines.csv",
        "order,date,store,name,sku,product,qty,price,disc",
        [
            "A-1,2024-03-01,S1,Store One,K1,Kit Kat,3,10.00,15%",
            "A-1,2024-03-01,S1,Store One,K2,Maggi,1,12.50,0.1",
        ],
    )
    mapping = {
        "order_id": "order",
        "order_date": "date",
        "store_code": "store",
        "store_name": "name",
        "sku": "sku",
        "product_name": "product",
        "quantity": "qty",
        "unit_price": "price",
        "discount": "disc",
    }
    result = run_import(db, "orders", path, mapping)
    assert result.rejects == []
    order = db.scalars(select(Order).where(Order.external_id == "A-1")).one()
    assert [line.amount for line in order.lines] == [Decimal("25.50"), Decimal("11.25")]
    assert order.total_amount == Decimal("36.75")


def test_without_order_id_one_order_per_store_and_date(db: Session, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "pos.csv",
        "store,name,day,sku,product,qty,price",
        [
            "S1,Store One,2024-01-05,K1,Kit Kat,2,10",
            "S1,Store One,2024-01-05,K2,Maggi,1,12",
            "S1,Store One,2024-01-06,K1,Kit Kat,4,10",
            "S2,Store Two,2024-01-05,K1,Kit Kat,1,10",
        ],
    )
    mapping = {
        "store_code": "store",
        "store_name": "name",
        "order_date": "day",
        "sku": "sku",
        "product_name": "product",
        "quantity": "qty",
        "unit_price": "price",
    }
    result = run_import(db, "orders", path, mapping)
    assert result.rejects == []
    rows = db.execute(
        select(Order.external_id, func.count(OrderLine.id))
        .join(OrderLine)
        .where(Order.source_channel == "import")
        .group_by(Order.external_id)
        .order_by(Order.external_id)
    ).all()
    assert rows == [("auto:S1:2024-01-05", 2), ("auto:S1:2024-01-06", 1), ("auto:S2:2024-01-05", 1)]
    # The derived key makes the same file idempotent too.
    again = run_import(db, "orders", path, mapping)
    assert (again.inserted, again.unchanged) == (0, 4)
    assert count(db, Order) == 3


def test_header_and_lines_files_join_on_order_id(db: Session, tmp_path: Path) -> None:
    stores = write_csv(
        tmp_path / "customers.csv",
        "customer_id,company_name,city,country",
        ["ALFKI,Alfreds Futterkiste,Berlin,Germany", "ANATR,Ana Trujillo,México D.F.,Mexico"],
        encoding="utf-8",
        eol="\n",
    )
    products = write_csv(
        tmp_path / "products.csv",
        "product_id,product_name,category_id,unit_price,units_in_stock,reorder_level",
        ["11,Queso Cabrales,4,21,22,30", "42,Singaporean Hokkien Fried Mee,5,14,26,0"],
    )
    categories = write_csv(
        tmp_path / "categories.csv",
        "category_id,category_name",
        ["4,Dairy Products", "5,Grains/Cereals"],
    )
    headers = write_csv(
        tmp_path / "orders.csv",
        "order_id,customer_id,order_date,required_date,shipped_date",
        [
            "10248,ALFKI,1996-07-04,1996-08-01,1996-07-16",
            "10249,ANATR,1996-07-05,1996-08-16,",
            "10250,ALFKI,1996-07-08,1996-08-05,1996-07-12",  # no lines: rejected
        ],
    )
    lines = write_csv(
        tmp_path / "order_details.csv",
        "order_id,product_id,unit_price,quantity,discount",
        ["10248,11,14,12,0", "10248,42,9.80000019,10,0", "10249,42,42.4000015,40,0.150000006"],
    )
    assert run_import(
        db,
        "stores",
        stores,
        {"store_code": "customer_id", "store_name": "company_name", "region": "country"},
    ).written
    product_result = run_import(
        db,
        "products",
        products,
        {
            "sku": "product_id",
            "category": "category_id",
            "price": "unit_price",
            "on_hand": "units_in_stock",
            "reorder_point": "reorder_level",
        },
        lookups={"category": f"{categories}:category_id:category_name"},
    )
    assert product_result.written
    cabrales = db.scalars(select(Product).where(Product.sku == "11")).one()
    assert (cabrales.name, cabrales.category, cabrales.price) == (
        "Queso Cabrales",
        "Dairy Products",
        Decimal("21.00"),
    )
    stock = db.scalars(select(InventoryItem).where(InventoryItem.product_id == cabrales.id)).one()
    assert (stock.warehouse, stock.on_hand, stock.reorder_point) == ("MAIN", 22, 30)

    mapping = {
        "store_code": "customer_id",
        "sku": "product_id",
        "promised_date": "required_date",
        "delivered_date": "shipped_date",
    }
    request = ImportRequest(entity="orders", path=headers, mapping=mapping, lines_path=lines)
    failed = import_file(db, request)
    assert not failed.written
    assert [(r.file, r.line, r.reason) for r in failed.rejects] == [
        ("main", 4, "order 10250 has no lines in order_details.csv")
    ]
    assert count(db, Order) == 0

    result = import_file(db, ImportRequest(**{**request.__dict__, "skip_rejects": True}))
    assert result.written and dict(result.created) == {"orders": 2, "order lines": 3}
    first = db.scalars(select(Order).where(Order.external_id == "10248")).one()
    assert first.store.code == "ALFKI" and first.delivered_date == dt.date(1996, 7, 16)
    assert first.promised_date == dt.date(1996, 8, 1)
    assert [(line.product.sku, line.unit_price, line.amount) for line in first.lines] == [
        ("11", Decimal("14.00"), Decimal("168.00")),
        ("42", Decimal("9.80"), Decimal("98.00")),
    ]
    second = db.scalars(select(Order).where(Order.external_id == "10249")).one()
    # 40 x 42.40 x (1 - 0.15) = 1441.60
    assert second.lines[0].discount == Decimal("0.1500") and second.total_amount == Decimal(
        "1441.60"
    )


def test_lines_of_an_unknown_order_are_rejected(db: Session, tmp_path: Path) -> None:
    db.add(Store(code="S1", name="Store One"))
    db.add(Product(sku="K1", name="Kit Kat"))
    db.flush()
    headers = write_csv(tmp_path / "h.csv", "id,store,date", ["1,S1,2024-01-01"])
    lines = write_csv(tmp_path / "l.csv", "id,sku,qty,price", ["1,K1,1,5", "2,K1,3,5"])
    mapping = {
        "order_id": "id",
        "store_code": "store",
        "order_date": "date",
        "sku": "sku",
        "quantity": "qty",
        "unit_price": "price",
    }
    result = run_import(db, "orders", headers, mapping, lines_path=lines)
    assert [(r.file, r.line, r.reason) for r in result.rejects] == [
        ("lines", 3, "order 2 is not in h.csv")
    ]
    assert count(db, Order) == 0


def test_unknown_stores_and_products_need_their_name_columns(db: Session, tmp_path: Path) -> None:
    path = sales_file(tmp_path)
    mapping = {k: v for k, v in SALES_MAP.items() if k not in ("store_name", "product_name")}
    result = run_import(db, "orders", path, mapping, options=EXCEL_EU)
    assert not result.written and counts(db) == {
        "stores": 0,
        "products": 0,
        "orders": 0,
        "order_lines": 0,
    }
    assert (
        "store 'C-01' does not exist; import stores first, or map store_name" in reasons(result)[2]
    )
    # Once the stores exist, only the products are missing.
    db.add_all([Store(code="C-01", name="Sharma"), Store(code="C-02", name="Gupta")])
    db.flush()
    result = run_import(db, "orders", path, mapping, options=EXCEL_EU)
    assert reasons(result)[2].startswith("product 'P-TEA' does not exist")


def test_unparseable_date_rejects_the_row_with_its_line_number(db: Session, tmp_path: Path) -> None:
    rows = [*SALES_ROWS]
    rows[2] = rows[2].replace("15/11/2020", "31/02/2020")
    rows[3] = rows[3].replace("15/11/2020", "31/02/2020")
    result = run_import(db, "orders", sales_file(tmp_path, rows), SALES_MAP, options=EXCEL_EU)

    assert not result.written
    assert reasons(result) == {
        4: "Order Date: '31/02/2020' is not a date in the format %d/%m/%Y",
        5: "Order Date: '31/02/2020' is not a date in the format %d/%m/%Y",
    }
    # The good order was not written either: the file imports whole or not at all.
    assert counts(db) == {"stores": 0, "products": 0, "orders": 0, "order_lines": 0}
    runs = db.scalars(select(ImportRun)).all()
    assert [(r.rows_read, r.rows_inserted, r.rows_rejected) for r in runs] == [(4, 0, 2)]


@pytest.mark.parametrize("quantity", ["-3", "0", "2,5"])
def test_negative_zero_or_fractional_quantity_is_rejected(
    db: Session, tmp_path: Path, quantity: str
) -> None:
    rows = [*SALES_ROWS]
    rows[1] = rows[1].replace(";10;0,2", f";{quantity};0,2")
    result = run_import(db, "orders", sales_file(tmp_path, rows), SALES_MAP, options=EXCEL_EU)
    assert not result.written and count(db, Order) == 0
    assert reasons(result)[3].startswith("Quantity: ")
    assert quantity in reasons(result)[3]
    # The other line of the same order is rejected with it, pointing at the culprit.
    assert reasons(result)[2] == "order IN-1001 not imported: line 3 of the same order was rejected"
    assert set(reasons(result)) == {2, 3}


def test_skip_rejects_imports_whole_good_orders_only(db: Session, tmp_path: Path) -> None:
    rows = [*SALES_ROWS]
    rows[1] = rows[1].replace(";10;0,2", ";-1;0,2")
    result = run_import(
        db, "orders", sales_file(tmp_path, rows), SALES_MAP, options=EXCEL_EU, skip_rejects=True
    )
    assert result.written and result.rejected == 2
    assert db.scalars(select(Order.external_id)).all() == ["IN-1002"]
    run = db.scalars(select(ImportRun)).one()
    assert (run.rows_read, run.rows_inserted, run.rows_rejected) == (4, 2, 2)


def test_same_file_twice_creates_nothing_new(db: Session, tmp_path: Path) -> None:
    path = sales_file(tmp_path)
    first = run_import(db, "orders", path, SALES_MAP, options=EXCEL_EU)
    before = counts(db)
    second = run_import(db, "orders", path, SALES_MAP, options=EXCEL_EU)

    assert first.inserted == 4 and second.written
    assert (second.inserted, second.unchanged, second.rejected) == (0, 4, 0)
    assert counts(db) == before == {"stores": 2, "products": 2, "orders": 2, "order_lines": 4}
    runs = db.scalars(select(ImportRun).order_by(ImportRun.id)).all()
    assert [(r.rows_inserted, r.rows_skipped) for r in runs] == [(4, 0), (0, 4)]
    assert runs[0].file_sha256 == runs[1].file_sha256


def test_conflicting_rows_of_one_order_are_rejected(db: Session, tmp_path: Path) -> None:
    rows = [*SALES_ROWS]
    rows[1] = rows[1].replace("C-01;Sharma General", "C-02;Gupta Stores")
    result = run_import(db, "orders", sales_file(tmp_path, rows), SALES_MAP, options=EXCEL_EU)
    assert reasons(result)[3] == (
        "order IN-1001: it is for store C-01 on 2020-11-08 (line 2); "
        "this row says store C-02 on 2020-11-08"
    )


def test_dry_run_reports_and_writes_nothing(db: Session, tmp_path: Path) -> None:
    result = run_import(
        db, "orders", sales_file(tmp_path), SALES_MAP, options=EXCEL_EU, dry_run=True
    )
    assert result.accepted and not result.written and result.inserted == 4
    assert result.created["orders"] == 2
    assert counts(db)["orders"] == 0 and count(db, ImportRun) == 0


# --- whole-file problems ---------------------------------------------------------------------


def test_missing_mapped_column_names_it_and_writes_nothing(db: Session, tmp_path: Path) -> None:
    mapping = {**SALES_MAP, "order_date": "Order Dte"}
    with pytest.raises(ImportFailure) as raised:
        run_import(db, "orders", sales_file(tmp_path), mapping, options=EXCEL_EU)
    assert "column 'Order Dte' (mapped to order_date) is not in sales.csv" in str(raised.value)
    assert "Order Date" in str(raised.value)  # the columns it does have are listed
    assert counts(db)["orders"] == 0


def test_unknown_field_and_missing_required_field(db: Session, tmp_path: Path) -> None:
    with pytest.raises(ImportFailure, match="unknown field 'sotre_code' for orders"):
        run_import(db, "orders", sales_file(tmp_path), {**SALES_MAP, "sotre_code": "Customer ID"})
    mapping = {k: v for k, v in SALES_MAP.items() if k not in ("amount",)}
    with pytest.raises(ImportFailure, match="add --map unit_price=COLUMN or --map amount=COLUMN"):
        run_import(db, "orders", sales_file(tmp_path), mapping, options=EXCEL_EU)


def test_wrong_encoding_is_a_clear_error(db: Session, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "kunden.csv",
        "code;name;city",
        ["K1;Bäckerei Müller;München", "K2;Café Crème;Köln"],
        encoding="cp1252",
    )
    with pytest.raises(ImportFailure) as raised:
        run_import(db, "stores", path, {"store_code": "code", "store_name": "name"})
    message = str(raised.value)
    assert "kunden.csv is not valid utf-8-sig" in message and "line 2" in message
    assert "--encoding" in message
    # With the right encoding the same file imports, accents intact.
    result = run_import(
        db,
        "stores",
        path,
        {"store_code": "code", "store_name": "name"},
        options=CsvOptions(encoding="cp1252"),
    )
    assert result.written
    assert db.scalars(select(Store.name).where(Store.code == "K2")).one() == "Café Crème"


def test_numbers_in_the_wrong_decimal_convention_are_rejected(db: Session, tmp_path: Path) -> None:
    # The European file read with the default '.' decimal mark.
    options = CsvOptions(delimiter=";", date_format="%d/%m/%Y")
    result = run_import(db, "orders", sales_file(tmp_path), SALES_MAP, options=options)
    assert "pass --decimal , for files that use commas" in reasons(result)[3]


# --- stores, products, payments, communications ---------------------------------------------


def test_stores_update_on_reimport_without_erasing(db: Session, tmp_path: Path) -> None:
    header = "code;name;city;phone;credit"
    mapping = {
        "store_code": "code",
        "store_name": "name",
        "city": "city",
        "phone": "phone",
        "credit_limit": "credit",
    }
    first = write_csv(tmp_path / "a.csv", header, ["S1;Sharma;Pune;98200 11111;5.000,00"])
    run_import(db, "stores", first, mapping, options=EXCEL_EU)
    second = write_csv(
        tmp_path / "b.csv", header, ["S1;Sharma General;Pune;;5.000,00", "S2;New;Goa;;"]
    )
    result = run_import(db, "stores", second, mapping, options=EXCEL_EU)

    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 0)
    store = db.scalars(select(Store).where(Store.code == "S1")).one()
    assert (store.name, store.phone, store.credit_limit) == (
        "Sharma General",
        "98200 11111",  # an empty cell does not erase
        Decimal("5000.00"),
    )


def test_tab_separated_store_list_assigns_reps(db: Session, tmp_path: Path) -> None:
    rep = User(email="ravi@example.com", name="Ravi", role="rep")
    db.add(rep)
    db.flush()
    path = write_csv(
        tmp_path / "stores.tsv",
        "code\tname\trep",
        ["S1\tSharma\tRAVI@example.com", "S2\tGupta\tnobody@example.com"],
    )
    mapping = {"store_code": "code", "store_name": "name", "rep": "rep"}
    result = run_import(db, "stores", path, mapping, skip_rejects=True)
    assert result.tables["main"].delimiter == "\t"  # detected from the header
    assert reasons(result) == {3: "rep: 'nobody@example.com' is not the email or code of a user"}
    assert db.scalars(select(Store.rep_id).where(Store.code == "S1")).one() == rep.id


def test_payments_create_invoices_and_refuse_overpayment(db: Session, tmp_path: Path) -> None:
    db.add(Store(code="S1", name="Sharma", payment_terms_days=15))
    db.flush()
    path = write_csv(
        tmp_path / "ledger.csv",
        "inv;store;inv_date;inv_amount;paid;amount;ref",
        [
            "INV-1;S1;01/03/2024;1.000,00;05/03/2024;400,00;UPI-77",
            "INV-1;S1;01/03/2024;1.000,00;20/03/2024;600,00;",
            "INV-2;S1;02/03/2024;300,00;;;",
            "INV-2;S1;02/03/2024;300,00;10/03/2024;350,00;CHQ-1",
        ],
    )
    mapping = {
        "invoice_number": "inv",
        "store_code": "store",
        "invoice_date": "inv_date",
        "invoice_amount": "inv_amount",
        "paid_on": "paid",
        "amount": "amount",
        "reference": "ref",
    }
    failed = run_import(db, "payments", path, mapping, options=EXCEL_EU)
    assert reasons(failed) == {
        5: "payments of invoice INV-2 would total 350.00, more than its amount 300.00"
    }
    assert count(db, Invoice) == 0

    result = run_import(db, "payments", path, mapping, options=EXCEL_EU, skip_rejects=True)
    assert dict(result.created) == {"invoices": 2, "payments": 2}
    invoice = db.scalars(select(Invoice).where(Invoice.number == "INV-1")).one()
    assert invoice.due_date == dt.date(2024, 3, 16)  # the store's 15-day terms
    paid = db.scalars(
        select(Payment).where(Payment.invoice_id == invoice.id).order_by(Payment.paid_on)
    ).all()
    assert [(p.amount, p.reference is not None) for p in paid] == [
        (Decimal("400.00"), True),
        (Decimal("600.00"), True),
    ]
    again = run_import(db, "payments", path, mapping, options=EXCEL_EU, skip_rejects=True)
    assert again.inserted == 0 and count(db, Payment) == 2 and count(db, Invoice) == 2


def test_communications_import_once(db: Session, tmp_path: Path) -> None:
    db.add(Store(code="S1", name="Sharma"))
    db.flush()
    path = write_csv(
        tmp_path / "notes.csv",
        "store,when,type,text,by",
        [
            "S1,2024-03-01 10:30,visit,Owner wants the Diwali scheme on Parle-G,Ravi",
            'S1,2024-03-02 18:05,WhatsApp,"Delivery late again, 3 cases short",',
            "S9,2024-03-02 18:05,call,Who is this?,",
        ],
    )
    mapping = {
        "store_code": "store",
        "occurred_at": "when",
        "kind": "type",
        "text": "text",
        "author": "by",
    }
    options = CsvOptions(timezone="Asia/Kolkata")
    result = run_import(db, "communications", path, mapping, options=options, skip_rejects=True)
    assert reasons(result) == {4: "store 'S9' does not exist; import stores first"}
    notes = db.scalars(select(Communication).order_by(Communication.occurred_at)).all()
    assert [(n.kind, n.direction, n.channel) for n in notes] == [
        ("note", "internal", "import"),
        ("message", "inbound", "import"),
    ]
    assert notes[0].occurred_at == dt.datetime(2024, 3, 1, 5, 0, tzinfo=dt.UTC)
    assert notes[1].text == "Delivery late again, 3 cases short"
    again = run_import(db, "communications", path, mapping, options=options, skip_rejects=True)
    assert again.inserted == 0 and count(db, Communication) == 2


# --- the command line ------------------------------------------------------------------------


@pytest.fixture()
def cli_db(create_database: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated database of its own, used by `mangalm` through DATABASE_URL."""
    url = create_database(migrate=True)
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    reset_engine()
    yield url
    reset_engine()
    get_settings.cache_clear()


def db_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return {**counts(session), "import_runs": count(session, ImportRun)}
    finally:
        engine.dispose()


def invoke(args: list[str]) -> tuple[int, str]:
    """Run `mangalm` and return its exit code and output with line wrapping undone."""
    result = CliRunner().invoke(app, args)
    return result.exit_code, " ".join(result.output.split())


def cli_args(path: Path, *extra: str) -> list[str]:
    args = [
        "import",
        "orders",
        str(path),
        "--delimiter",
        ";",
        "--decimal",
        ",",
        "--date-format",
        "%d/%m/%Y",
    ]
    for field, column in SALES_MAP.items():
        args += ["--map", f"{field}={column}"]
    return args + list(extra)


def test_cli_rejects_file_and_nothing_written(cli_db: str, tmp_path: Path) -> None:
    rows = [*SALES_ROWS]
    rows[2] = rows[2].replace(";2;0", ";-2;0")
    path = sales_file(tmp_path, rows)
    code, output = invoke(cli_args(path))

    assert code == 1, output
    assert "sales.csv line 4: Quantity: must be greater than 0 (got '-2')" in output
    assert "Nothing was imported" in output
    with (tmp_path / "sales.csv.rejects.csv").open(encoding="utf-8-sig", newline="") as handle:
        written = list(csv.reader(handle, delimiter=";"))
    assert written[0] == [*SALES_HEADER.split(";"), "line", "reason"]
    assert [(r[1], r[-2], r[-1]) for r in written[1:]] == [
        ("IN-1002", "4", "Quantity: must be greater than 0 (got '-2')"),
        ("IN-1002", "5", "order IN-1002 not imported: line 4 of the same order was rejected"),
    ]
    assert written[1][:-2] == rows[2].split(";")  # the original values, untouched
    assert db_counts(cli_db) == {
        "stores": 0,
        "products": 0,
        "orders": 0,
        "order_lines": 0,
        "import_runs": 1,
    }


def test_cli_skip_rejects_and_a_second_run(cli_db: str, tmp_path: Path) -> None:
    rows = [*SALES_ROWS]
    rows[0] = rows[0].replace("08/11/2020", "2020-11-08")
    path = sales_file(tmp_path, rows)
    rejects = tmp_path / "out" / "bad.csv"
    code, output = invoke(cli_args(path, "--skip-rejects", "--rejects", str(rejects)))

    assert code == 0, output
    assert "2 rejected" in output and "Written: 1 stores" in output
    assert rejects.exists() and len(rejects.read_text(encoding="utf-8-sig").splitlines()) == 3
    assert db_counts(cli_db)["orders"] == 1

    code, output = invoke(cli_args(sales_file(tmp_path)))
    assert code == 0, output
    assert "1 orders" in output and "2 already present" in output
    assert db_counts(cli_db)["orders"] == 2


def test_cli_missing_column_is_one_line_error(cli_db: str, tmp_path: Path) -> None:
    code, output = invoke([*cli_args(sales_file(tmp_path)), "--map", "sku=SKU"])
    assert code == 2
    assert "error: --map gives field 'sku' twice" in output
    args = cli_args(sales_file(tmp_path))
    args[args.index("order_date=Order Date")] = "order_date=Date"
    code, output = invoke(args)
    assert code == 2
    assert "column 'Date' (mapped to order_date) is not in sales.csv" in output
    assert "Traceback" not in output
    assert db_counts(cli_db)["import_runs"] == 0


def test_rejects_file_keeps_the_input_encoding(db: Session, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "k.csv", "code;name;lat", ["K1;Café;91"], encoding="cp1252")
    options = CsvOptions(encoding="cp1252")
    result = run_import(
        db,
        "stores",
        path,
        {"store_code": "code", "store_name": "name", "lat": "lat"},
        options=options,
    )
    [written] = write_rejects_files(result)
    assert written.read_text(encoding="cp1252").splitlines() == [
        "code;name;lat;line;reason",
        "K1;Café;91;2;lat: must be less than or equal to 90 (got '91')",
    ]
